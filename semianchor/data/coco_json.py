"""Any COCO-format dataset (a json file + an image folder), named in a config or on the CLI.

``configs/common/data/coco_json.py`` builds its datasets with :func:`get_coco_json_dicts`, so a
new dataset needs no code, only overrides::

    dataloader.train.dataset.json_file=/data/train.json
    dataloader.train.dataset.image_root=/data/img

The dataset is registered (``register_coco_instances``) on first use, so ``COCOEvaluator`` finds
its ``json_file`` and class names like for a built-in dataset. Missing files and malformed json
raise an error that names the file.

:func:`get_checked_dataset_dicts` gives registered datasets (COCO 2017 in
``configs/common/data/coco.py``) the same box check when they are loaded.
"""

import json
import logging
import math
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import BoxMode

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
        raise ValueError(_invalid_box_message(json_file, bad))
    if bad:
        for record in dicts:
            record["annotations"] = [a for a in record["annotations"] if not _bad_box(a["bbox"])]
        if filter_empty:
            dicts = [r for r in dicts if r["annotations"]]
        logger.warning(f"Dropped {len(bad)} annotation(s) with invalid boxes from {json_file}")
    return dicts


def _invalid_box_message(source: str, bad: List[Dict]) -> str:
    shown = "; ".join(
        f"image id {b['image_id']}, annotation id {b['id']}: bbox {b['bbox']}" for b in bad[:5]
    )
    return (
        f"{source} has {len(bad)} invalid box(es) (not finite, or negative width/height): "
        f"{shown}{' ...' if len(bad) > 5 else ''}. Fix the file, or set "
        "dataloader.<split>.dataset.invalid_boxes=drop to drop them."
    )


def _record_box_bad(annotation: Dict) -> bool:
    """``_bad_box`` for an annotation of a Detectron2 dataset dict (any absolute box mode)."""
    bbox, mode = annotation.get("bbox"), annotation.get("bbox_mode", BoxMode.XYWH_ABS)
    if mode == BoxMode.XYXY_ABS:
        try:
            x0, y0, x1, y1 = (float(v) for v in bbox)
        except (TypeError, ValueError):
            return True
        bbox = [x0, y0, x1 - x0, y1 - y0]
    elif mode != BoxMode.XYWH_ABS:
        return False  # rotated / relative boxes: Detectron2's own checks
    return _bad_box(bbox)


def get_checked_dataset_dicts(
    names, filter_empty: bool = True, invalid_boxes: str = "error", **kwargs
) -> List[Dict]:
    """``detectron2.data.get_detection_dataset_dicts`` for registered datasets (COCO 2017, LVIS,
    anything in ``DatasetCatalog``) with the boxes checked when the dataset is loaded, before
    the first iteration: a box that is not finite or has a negative width/height raises a
    ValueError naming the dataset, its json file (when registered with one), the image id and
    the annotation id; ``invalid_boxes="drop"`` removes such annotations and logs how many.
    Other keyword arguments go to ``get_detection_dataset_dicts``."""
    if invalid_boxes not in INVALID_BOX_POLICIES:
        raise ValueError(
            f"invalid_boxes must be one of {INVALID_BOX_POLICIES}, got {invalid_boxes!r}"
        )
    dicts = get_detection_dataset_dicts(names, filter_empty=filter_empty, **kwargs)
    n_bad = sum(_record_box_bad(a) for r in dicts for a in r.get("annotations", []))
    if not n_bad:
        return dicts
    names = [names] if isinstance(names, str) else list(names)
    if invalid_boxes == "error":
        # the annotation ids are in the json file only (load_coco_json does not keep them)
        for name in names:
            json_file = MetadataCatalog.get(name).get("json_file", None)
            if json_file and os.path.isfile(json_file):
                bad = find_invalid_boxes(json_file)
                if bad:
                    raise ValueError(
                        _invalid_box_message(f"Dataset {name!r} (COCO json file {json_file})", bad)
                    )
        bad = [
            {"image_id": r.get("image_id"), "id": None, "bbox": a.get("bbox")}
            for r in dicts
            for a in r.get("annotations", [])
            if _record_box_bad(a)
        ]
        raise ValueError(_invalid_box_message(f"Dataset(s) {names}", bad))
    for record in dicts:
        record["annotations"] = [a for a in record["annotations"] if not _record_box_bad(a)]
    if filter_empty:
        dicts = [r for r in dicts if r["annotations"]]
    logger.warning(f"Dropped {n_bad} annotation(s) with invalid boxes from dataset(s) {names}")
    return dicts
