"""Class names of a dataset (:func:`dataset_class_names`) and the class count of a LazyConfig's
model, from its training data unless the config gives it.

A COCO-json config sets ``model.num_classes = None``: the count is the json's number of categories
(:func:`resolve_num_classes`, called by ``tools/lazyconfig_train_net.py`` before the config is
saved and the model built, and by the predictor). A count given in the config or on the command
line is kept, and is an error when smaller than the data's.
"""

import os
from typing import List, Optional

from detectron2.data import MetadataCatalog

from ..data.coco_json import coco_json_class_names

__all__ = ["dataset_class_names", "resolve_num_classes"]


def dataset_class_names(dataset) -> Optional[List[str]]:
    """The class names of a dataset, the one way the library, tools and benchmarks read them:

    * a ``str``: a dataset registered in Detectron2's catalogs, its metadata's ``thing_classes``
      (a COCO json dataset has them once it is registered, i.e. after its dicts were loaded);
    * a dataloader's ``dataset`` node (or a plain dict): a COCO json's categories (``json_file``,
      sorted by category id: Detectron2's contiguous order) or its registered dataset's
      (``names``, the first one).

    None when it names neither, or the registered dataset has no ``thing_classes``.
    """
    if dataset is None:
        return None
    if isinstance(dataset, str):
        names = MetadataCatalog.get(dataset).get("thing_classes", None)
        return None if names is None else list(names)
    json_file = dataset.get("json_file", "")
    if json_file:
        if not os.path.isfile(json_file):
            raise FileNotFoundError(f"COCO json file not found: {json_file}")
        return coco_json_class_names(json_file)
    names = dataset.get("names", None)
    if names:
        names = [names] if isinstance(names, str) else list(names)
        return dataset_class_names(names[0])
    return None


def resolve_num_classes(cfg) -> None:
    """Set ``cfg.model.num_classes`` from the training data when it is None; raise ValueError
    when a given count is smaller than the data's number of classes."""
    if "num_classes" not in cfg.model:
        return
    train = cfg.dataloader.get("train", None)
    names = dataset_class_names(train.get("dataset", None) if train is not None else None)
    given = cfg.model.num_classes
    if given is None:
        if names is None:
            raise ValueError(
                "model.num_classes is None (take it from the data) but the training dataset "
                "names no classes: set model.num_classes"
            )
        cfg.model.num_classes = len(names)
    elif names is not None and given < len(names):
        raise ValueError(
            f"model.num_classes={given} but the training data has {len(names)} classes {names}; "
            f"set model.num_classes={len(names)} or leave it unset (None) in a COCO-json config"
        )
