"""Any COCO-format dataset (a json file + an image folder), named in a config or on the CLI.

``configs/common/data/coco_json.py`` builds its datasets with :func:`get_coco_json_dicts`, so a
new dataset needs no code, only overrides::

    dataloader.train.dataset.json_file=/data/train.json dataloader.train.dataset.image_root=/data/img

The dataset is registered (``register_coco_instances``) on first use, so ``COCOEvaluator`` finds
its ``json_file`` and class names like for a built-in dataset. Missing files and malformed json
raise an error that names the file.
"""

import json
import logging
import math
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts
from detectron2.data.datasets import register_coco_instances

_REQUIRED_KEYS = ("images", "categories")  # test-set jsons have no "annotations"
INVALID_BOX_POLICIES = ("error", "drop")

logger = logging.getLogger(__name__)


def _bad_box(bbox) -> bool:
    """A COCO [x, y, w, h] box that no loss can use: not 4 finite numbers, or w / h < 0 (flipped).
    Zero-size boxes are left to Detectron2's mapper, which drops them."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return True
    return not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0


def find_invalid_boxes(json_file: str) -> List[Dict]:
    """The annotations of ``json_file`` whose box is invalid (see ``_bad_box``), as dicts with the
    image id, annotation id and bbox, in file order."""
    with open(json_file) as f:
        annotations = json.load(f).get("annotations", [])
    return [
        {"image_id": a.get("image_id"), "id": a.get("id"), "bbox": a.get("bbox")}
        for a in annotations
        if "bbox" in a and _bad_box(a["bbox"])
    ]


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
    name: str,
    json_file: str,
    image_root: str,
    filter_empty: bool = True,
    invalid_boxes: str = "error",
) -> List[Dict]:
    """Detectron2 dataset dicts of a COCO json dataset, registering it under ``name`` first.

    Args:
        name: dataset name in ``DatasetCatalog`` (e.g. "bccd_train"); the evaluator refers to it.
        json_file: COCO instances json.
        image_root: folder the json's ``file_name`` entries are relative to.
        filter_empty: drop images without annotations (as for training in Detectron2).
        invalid_boxes: what to do with annotations whose box is not 4 finite numbers with
            w, h >= 0 (a flipped box): "error" (default) raises ValueError naming the file, the
            image id and the annotation id, here, before the first iteration; "drop" removes them
            and logs how many.
    """
    if invalid_boxes not in INVALID_BOX_POLICIES:
        raise ValueError(
            f"invalid_boxes must be one of {INVALID_BOX_POLICIES}, got {invalid_boxes!r}"
        )
    register_coco_json(name, json_file, image_root)
    try:
        dicts = get_detection_dataset_dicts(name, filter_empty=filter_empty)
    except Exception as e:
        _validate_json(json_file)  # raises an error naming the file when the json is malformed
        e.add_note(f"(while loading COCO json file {json_file}, image root {image_root})")
        raise
    bad = find_invalid_boxes(json_file)
    if bad and invalid_boxes == "error":
        shown = "; ".join(
            f"image id {b['image_id']}, annotation id {b['id']}: bbox {b['bbox']}" for b in bad[:5]
        )
        raise ValueError(
            f"COCO json file {json_file} has {len(bad)} invalid box(es) (not finite, or negative "
            f"width/height): {shown}{' ...' if len(bad) > 5 else ''}. Fix the file, or set "
            "dataloader.<split>.dataset.invalid_boxes=drop to drop them."
        )
    if bad:
        for record in dicts:
            record["annotations"] = [a for a in record["annotations"] if not _bad_box(a["bbox"])]
        if filter_empty:
            dicts = [r for r in dicts if r["annotations"]]
        logger.warning(f"Dropped {len(bad)} annotation(s) with invalid boxes from {json_file}")
    return dicts
