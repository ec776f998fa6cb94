"""Datasets: the embedded "shapes" dataset, the shipped real dataset (BCCD) and COCO-format json
files named on the command line.

Importing this package registers the embedded splits (``semianchor_shapes_{train,val,tiny}``) and
the builtin ones (``bccd_train``, ``bccd_val``) in Detectron2's
``DatasetCatalog``/``MetadataCatalog``.
"""

from .builtin_datasets import BCCD_CLASS_NAMES, BCCD_ROOT, register_builtin
from .coco_json import (
    coco_json_class_names,
    get_checked_dataset_dicts,
    get_coco_json_dicts,
    register_coco_json,
)
from .shapes import CLASS_NAMES as SHAPES_CLASS_NAMES
from .shapes import load_shapes, register_shapes

register_shapes()
register_builtin()

__all__ = [
    "BCCD_CLASS_NAMES",
    "BCCD_ROOT",
    "SHAPES_CLASS_NAMES",
    "coco_json_class_names",
    "get_checked_dataset_dicts",
    "get_coco_json_dicts",
    "load_shapes",
    "register_builtin",
    "register_coco_json",
    "register_shapes",
]
