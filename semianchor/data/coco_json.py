"""Any COCO-format dataset (a json file + an image folder), named in a config or on the CLI.

``configs/common/data/coco_json.py`` builds its datasets with :func:`get_coco_json_dicts`, so a
new dataset needs no code, only overrides::

    dataloader.train.dataset.json_file=/data/train.json dataloader.train.dataset.image_root=/data/img

The dataset is registered (``register_coco_instances``) on first use, so ``COCOEvaluator`` finds
its ``json_file`` and class names like for a built-in dataset. Missing files and malformed json
raise an error that names the file.
"""

import json
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts
from detectron2.data.datasets import register_coco_instances

_REQUIRED_KEYS = ("images", "categories")  # test-set jsons have no "annotations"


def _check_paths(json_file: str, image_root: str) -> None:
    if not json_file:
        raise ValueError("COCO json dataset: json_file is empty; set it, e.g. on the command line")
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO json file not found: {json_file}")
    if not image_root:
        raise ValueError(f"COCO json dataset {json_file}: image_root is empty; set it")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"Image root of {json_file} not found: {image_root}")


def register_coco_json(name: str, json_file: str, image_root: str) -> None:
    """Register ``name`` as the COCO json dataset (idempotent for the same files).

    Raises:
        FileNotFoundError: json_file or image_root does not exist.
        ValueError: ``name`` is already registered with other files.
    """
    _check_paths(json_file, image_root)
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        registered = (meta.get("json_file"), meta.get("image_root"))
        if registered != (json_file, image_root):
            raise ValueError(
                f"Dataset {name!r} is already registered with {registered}; cannot re-register it "
                f"with ({json_file}, {image_root}). Give the dataset another name."
            )
        return
    register_coco_instances(name, {}, json_file, image_root)


def coco_json_class_names(json_file: str) -> List[str]:
    """The json's category names in Detectron2's contiguous order (sorted by category id, as
    ``load_coco_json`` maps them), so a model trained on it and this list agree on class i."""
    _validate_json(json_file)
    with open(json_file) as f:
        categories = json.load(f)["categories"]
    try:
        return [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"Malformed COCO json file {json_file}: every category needs an id and a name ({e!r})"
        ) from e


def _validate_json(json_file: str) -> None:
    """Raise an error naming the file when it is not a COCO instances json."""
    try:
        with open(json_file) as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"Malformed COCO json file {json_file}: {e}") from e
    if not isinstance(content, dict):
        raise ValueError(f"Malformed COCO json file {json_file}: top level is not an object")
    missing = [k for k in _REQUIRED_KEYS if k not in content]
    if missing:
        raise ValueError(f"Malformed COCO json file {json_file}: missing keys {missing}")


def get_coco_json_dicts(
    name: str, json_file: str, image_root: str, filter_empty: bool = True
) -> List[Dict]:
    """Detectron2 dataset dicts of a COCO json dataset, registering it under ``name`` first.

    Args:
        name: dataset name in ``DatasetCatalog`` (e.g. "bccd_train"); the evaluator refers to it.
        json_file: COCO instances json.
        image_root: folder the json's ``file_name`` entries are relative to.
        filter_empty: drop images without annotations (as for training in Detectron2).
    """
    register_coco_json(name, json_file, image_root)
    try:
        return get_detection_dataset_dicts(name, filter_empty=filter_empty)
    except Exception as e:
        _validate_json(json_file)  # raises an error naming the file when the json is malformed
        e.add_note(f"(while loading COCO json file {json_file}, image root {image_root})")
        raise
