"""Datasets: the embedded "shapes" dataset and COCO-format json files named on the command line.

Importing this package registers the embedded splits (``semianchor_shapes_{train,val,tiny}``) in
Detectron2's ``DatasetCatalog``/``MetadataCatalog``.
"""

from .coco_json import coco_json_class_names, get_coco_json_dicts, register_coco_json
from .shapes import CLASS_NAMES as SHAPES_CLASS_NAMES
from .shapes import load_shapes, register_shapes

register_shapes()

__all__ = [
    "SHAPES_CLASS_NAMES",
    "coco_json_class_names",
    "get_coco_json_dicts",
    "load_shapes",
    "register_coco_json",
    "register_shapes",
]
