"""dataset_class_names: one reading of a dataset's class names for a registered name, a
dataloader's dataset node and a COCO json."""

import json

import pytest

from detectron2.config import LazyCall as L

import semianchor.data  # noqa: F401  (registers the embedded splits)
from semianchor.data import get_checked_dataset_dicts
from semianchor.data.shapes import CLASS_NAMES
from semianchor.engine.classes import dataset_class_names


def test_registered_name_node_and_json_agree(tmp_path):
    assert dataset_class_names("semianchor_shapes_train") == list(CLASS_NAMES)
    node = L(get_checked_dataset_dicts)(names="semianchor_shapes_train")
    assert dataset_class_names(node) == list(CLASS_NAMES)
    path = tmp_path / "a.json"
    categories = [{"id": 7, "name": "b"}, {"id": 2, "name": "a"}]  # contiguous order: by id
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    assert dataset_class_names({"json_file": str(path)}) == ["a", "b"]
    assert dataset_class_names("plumbing_test_unregistered_name") is None
    assert dataset_class_names({"json_file": ""}) is None and dataset_class_names(None) is None
    with pytest.raises(FileNotFoundError, match="missing.json"):
        dataset_class_names({"json_file": str(tmp_path / "missing.json")})
