"""The embedded shapes dataset and COCO-format json datasets named on the command line."""

import json
import os

import cv2
import numpy as np
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog

from semianchor.data import get_coco_json_dicts, load_shapes, register_coco_json
from semianchor.data import shapes as shapes_module
from semianchor.data.shapes import CLASS_NAMES, SPLITS, _render_image, _to_coco

from .conftest import REPO


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMIANCHOR_CACHE", str(tmp_path))
    return tmp_path


def test_splits_registered():
    for name in ("semianchor_shapes_train", "semianchor_shapes_val", "semianchor_shapes_tiny"):
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == CLASS_NAMES and meta.evaluator_type == "coco"


def test_rendering_is_deterministic():
    split = SPLITS["semianchor_shapes_train"]
    for index in (0, 1, 7, 123):
        image_a, annos_a = _render_image(split, index)
        image_b, annos_b = _render_image(split, index)
        np.testing.assert_array_equal(image_a, image_b)
        assert annos_a == annos_b


def test_generation_is_deterministic_across_caches(tmp_path, monkeypatch):
    loaded = []
    for sub in ("a", "b"):
        monkeypatch.setenv("SEMIANCHOR_CACHE", str(tmp_path / sub))
        records = shapes_module._generate(
            "semianchor_shapes_tiny", SPLITS["semianchor_shapes_tiny"]
        )
        loaded.append(records)
    a, b = loaded
    assert [r["annotations"] for r in a] == [r["annotations"] for r in b]
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(cv2.imread(ra["file_name"]), cv2.imread(rb["file_name"]))


def test_tiny_split_content():
    records = load_shapes("semianchor_shapes_tiny")
    split = SPLITS["semianchor_shapes_tiny"]
    assert len(records) == split.num_images
    counts = [len(r["annotations"]) for r in records]
    assert counts[1] == 0  # image 1 of every split is empty
    assert counts[0] >= 15  # image 0 is crowded
    for r in records:
        image = cv2.imread(r["file_name"])
        assert image.shape == (split.image_size, split.image_size, 3)
        assert image.std() > 5  # textured, not blank
        for a in r["annotations"]:
            x0, y0, x1, y1 = a["bbox"]
            assert 0 <= x0 < x1 <= split.image_size and 0 <= y0 < y1 <= split.image_size
            assert 0 <= a["category_id"] < len(CLASS_NAMES)


def test_train_split_variety():
    """Scale, aspect ratio, crowding and empty images on a sample of the training split."""
    split = SPLITS["semianchor_shapes_train"]
    annos = [_render_image(split, i)[1] for i in range(64)]
    boxes = np.array([box for image in annos for _, box in image])
    classes = [c for image in annos for c, _ in image]
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    sizes = np.sqrt(w * h)
    assert sizes.min() < 12 and sizes.max() > 100  # small and large objects
    assert (h / w).min() < 0.4 and (h / w).max() > 2.5  # flat and tall objects
    assert sum(len(a) == 0 for a in annos) >= 2
    assert max(len(a) for a in annos) >= 20
    assert set(classes) == set(range(len(CLASS_NAMES)))


def test_shapes_coco_json_matches_dataset_dicts():
    from pycocotools.coco import COCO

    records = load_shapes("semianchor_shapes_tiny")
    json_file = MetadataCatalog.get("semianchor_shapes_tiny").json_file
    coco = COCO(json_file)
    assert len(coco.getImgIds()) == len(records)
    for r in records:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[r["image_id"]]))
        assert len(anns) == len(r["annotations"])
        for ann, a in zip(anns, r["annotations"]):
            x0, y0, x1, y1 = a["bbox"]
            assert ann["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
            assert ann["category_id"] == a["category_id"] + 1


# ---- COCO json datasets ------------------------------------------------------------------------


def _write_coco(tmp_path, num_images=2):
    """A small valid COCO json over tiny-split images copied to tmp_path/images."""
    image_root = tmp_path / "images"
    image_root.mkdir()
    records = load_shapes("semianchor_shapes_tiny")[2 : 2 + num_images]
    for r in records:
        cv2.imwrite(str(image_root / os.path.basename(r["file_name"])), cv2.imread(r["file_name"]))
    json_file = tmp_path / "train.json"
    json_file.write_text(json.dumps(_to_coco(records)))
    return str(json_file), str(image_root)


def test_coco_json_loads_and_registers(tmp_path):
    json_file, image_root = _write_coco(tmp_path)
    dicts = get_coco_json_dicts("test_coco_json_ok", json_file, image_root, filter_empty=False)
    assert len(dicts) == 2 and all(os.path.exists(d["file_name"]) for d in dicts)
    meta = MetadataCatalog.get("test_coco_json_ok")
    assert meta.json_file == json_file and meta.thing_classes == CLASS_NAMES
    register_coco_json("test_coco_json_ok", json_file, image_root)  # same files: no-op
    with pytest.raises(ValueError, match="already registered"):
        register_coco_json("test_coco_json_ok", json_file, str(tmp_path))


def test_coco_json_missing_file_names_it(tmp_path):
    missing = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match=missing):
        get_coco_json_dicts("test_coco_json_missing", missing, str(tmp_path))


def test_coco_json_missing_image_root_names_it(tmp_path):
    json_file, _ = _write_coco(tmp_path)
    missing = str(tmp_path / "no_images")
    with pytest.raises(FileNotFoundError, match=missing):
        get_coco_json_dicts("test_coco_json_no_root", json_file, missing)


@pytest.mark.parametrize(
    "content", ['{"images": [', "[1, 2]", '{"annotations": []}'], ids=["truncated", "list", "keys"]
)
def test_malformed_coco_json_names_the_file(tmp_path, content):
    json_file = tmp_path / "bad.json"
    json_file.write_text(content)
    with pytest.raises(ValueError, match=str(json_file)):
        get_coco_json_dicts(f"test_coco_json_bad_{len(content)}", str(json_file), str(tmp_path))


def _flip_one_box(json_file):
    content = json.loads(open(json_file).read())
    ann = content["annotations"][1]
    x, y, w, h = ann["bbox"]
    ann["bbox"] = [x + w, y, -w, h]  # x1 < x0: a flipped box
    open(json_file, "w").write(json.dumps(content))
    return ann, len(content["annotations"])


def test_flipped_box_fails_at_load_naming_file_image_and_annotation(tmp_path):
    json_file, image_root = _write_coco(tmp_path)
    ann, _ = _flip_one_box(json_file)
    with pytest.raises(ValueError) as excinfo:
        get_coco_json_dicts("test_coco_json_flipped", json_file, image_root)
    message = str(excinfo.value)
    assert json_file in message
    assert f"image id {ann['image_id']}, annotation id {ann['id']}" in message


def test_flipped_box_dropped_on_request_with_a_count(tmp_path, caplog):
    json_file, image_root = _write_coco(tmp_path)
    _, total = _flip_one_box(json_file)
    with caplog.at_level("WARNING"):
        dicts = get_coco_json_dicts(
            "test_coco_json_flipped_drop", json_file, image_root, invalid_boxes="drop"
        )
    assert sum(len(d["annotations"]) for d in dicts) == total - 1
    assert "Dropped 1 annotation(s) with invalid boxes" in caplog.text


def test_registered_dataset_flipped_box_fails_at_load(tmp_path):
    """A registered dataset (the way Detectron2 registers COCO 2017) is
    checked when loaded, naming the json file, image id and annotation id; drop on request."""
    from detectron2.data.datasets import register_coco_instances

    from semianchor.data import get_checked_dataset_dicts

    json_file, image_root = _write_coco(tmp_path)
    ann, total = _flip_one_box(json_file)
    register_coco_instances("test_registered_flipped", {}, json_file, image_root)
    with pytest.raises(ValueError) as excinfo:
        get_checked_dataset_dicts("test_registered_flipped")
    message = str(excinfo.value)
    assert json_file in message and "test_registered_flipped" in message
    assert f"image id {ann['image_id']}, annotation id {ann['id']}" in message
    dicts = get_checked_dataset_dicts("test_registered_flipped", invalid_boxes="drop")
    assert sum(len(d["annotations"]) for d in dicts) == total - 1
    with pytest.raises(ValueError, match="invalid_boxes must be one of"):
        get_checked_dataset_dicts("test_registered_flipped", invalid_boxes="ignore")


def test_registered_dataset_without_json_names_the_image():
    from detectron2.structures import BoxMode

    from semianchor.data import get_checked_dataset_dicts

    records = [
        {
            "file_name": "a.jpg",
            "image_id": 7,
            "height": 10,
            "width": 10,
            "annotations": [
                {"bbox": [5, 5, 2, 9], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}
            ],
        },
        {
            "file_name": "b.jpg",
            "image_id": 8,
            "height": 10,
            "width": 10,
            "annotations": [
                {"bbox": [1, 1, 4, 4], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}
            ],
        },
    ]
    DatasetCatalog.register("test_registered_no_json", lambda: [dict(r) for r in records])
    MetadataCatalog.get("test_registered_no_json").thing_classes = ["a"]
    with pytest.raises(ValueError, match="image id 7"):
        get_checked_dataset_dicts("test_registered_no_json")
    assert [
        d["image_id"]
        for d in get_checked_dataset_dicts("test_registered_no_json", invalid_boxes="drop")
    ] == [8]


@pytest.mark.parametrize("config", ["coco.py", "bccd.py"])
def test_dataset_configs_check_boxes_at_load(config):
    from detectron2.config import LazyConfig

    from semianchor.data import get_checked_dataset_dicts

    cfg = LazyConfig.load(os.path.join(REPO, "configs", "common", "data", config))
    for split in ("train", "test"):
        assert cfg.dataloader[split].dataset._target_ is get_checked_dataset_dicts


def test_builtin_bccd_from_any_cwd(tmp_path, monkeypatch):
    """The shipped BCCD splits load (paths relative to the package) from an unrelated cwd, with
    the counts of their PROVENANCE.md and their class names before and after loading."""
    from semianchor.data import BCCD_CLASS_NAMES, BCCD_ROOT

    monkeypatch.chdir(tmp_path)
    expected = {"bccd_train": (292, 3922), "bccd_val": (72, 964)}
    for name, (num_images, num_boxes) in expected.items():
        assert MetadataCatalog.get(name).thing_classes == BCCD_CLASS_NAMES
        records = DatasetCatalog.get(name)
        assert len(records) == num_images
        assert sum(len(r["annotations"]) for r in records) == num_boxes
        assert all(os.path.isfile(r["file_name"]) for r in records)
        assert all(r["file_name"].startswith(BCCD_ROOT) for r in records)
        classes = {a["category_id"] for r in records for a in r["annotations"]}
        assert classes == {0, 1, 2}
        assert MetadataCatalog.get(name).thing_classes == BCCD_CLASS_NAMES
    for f in ("LICENSE", "PROVENANCE.md"):
        assert os.path.isfile(os.path.join(BCCD_ROOT, f))


def test_builtin_missing_files_are_named(monkeypatch, tmp_path):
    from semianchor.data import builtin_datasets

    monkeypatch.setattr(builtin_datasets, "BUILTIN_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        builtin_datasets.builtin_paths("bccd_val")
    with pytest.raises(KeyError, match="bccd_train"):
        builtin_datasets.builtin_paths("nope")
