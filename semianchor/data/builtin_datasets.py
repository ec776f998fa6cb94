"""Real datasets shipped inside the package, registered as builtin Detectron2 datasets.

``bccd_train`` (292 images) and ``bccd_val`` (72 images): BCCD, light-microscope photos of blood
smears (640x480 JPEG) with boxes of three classes (Platelets, RBC, WBC), MIT licence, 8.7 MB.
Files, licence and provenance are in ``semianchor/data/builtin/bccd/``. The paths are resolved
relative to this file, so the datasets work from any working directory and need no download.
"""

import os
from typing import Dict

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

BUILTIN_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "builtin")
BCCD_ROOT = os.path.join(BUILTIN_ROOT, "bccd")
# Category ids 1..3 of the jsons, in that order (PROVENANCE.md). Set at registration so that
# visualisations have the names before the json is first read; load_coco_json sets the same values.
BCCD_CLASS_NAMES = ["Platelets", "RBC", "WBC"]
BCCD_CLASS_COLORS = [(255, 200, 0), (220, 20, 60), (30, 120, 255)]

BUILTIN_COCO_SPLITS: Dict[str, tuple] = {
    "bccd_train": (
        os.path.join("bccd", "annotations", "train.json"),
        os.path.join("bccd", "images"),
    ),
    "bccd_val": (os.path.join("bccd", "annotations", "val.json"), os.path.join("bccd", "images")),
}


def builtin_paths(name: str):
    """(json_file, image_root) of a builtin split, as absolute paths.

    Raises:
        KeyError: unknown split.
        FileNotFoundError: the split's files are missing (e.g. a package built without its data).
    """
    if name not in BUILTIN_COCO_SPLITS:
        raise KeyError(
            f"Unknown builtin dataset {name!r}; available: {sorted(BUILTIN_COCO_SPLITS)}"
        )
    json_rel, image_rel = BUILTIN_COCO_SPLITS[name]
    json_file = os.path.join(BUILTIN_ROOT, json_rel)
    image_root = os.path.join(BUILTIN_ROOT, image_rel)
    for path in (json_file, image_root):
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"Builtin dataset {name!r}: {path} is missing. The files ship inside the package "
                f"(semianchor/data/builtin/); reinstall from a full checkout."
            )
    return json_file, image_root


def _load(name: str):
    json_file, image_root = builtin_paths(name)  # a clear error when the files are missing
    return load_coco_json(json_file, image_root, name)


def register_builtin() -> None:
    """Register every builtin split in ``DatasetCatalog``/``MetadataCatalog`` (idempotent).

    Registration only records paths (the json is read on first use, like Detectron2's builtin
    COCO splits), so importing semianchor stays cheap.
    """
    for name, (json_rel, image_rel) in BUILTIN_COCO_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda name=name: _load(name))
        MetadataCatalog.get(name).set(
            json_file=os.path.join(BUILTIN_ROOT, json_rel),  # COCOEvaluator evaluates against it
            image_root=os.path.join(BUILTIN_ROOT, image_rel),
            evaluator_type="coco",
            thing_classes=list(BCCD_CLASS_NAMES),
            thing_colors=list(BCCD_CLASS_COLORS),
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(BCCD_CLASS_NAMES))},
        )
