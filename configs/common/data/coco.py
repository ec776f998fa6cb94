"""COCO 2017 detection, read from ``$DETECTRON2_DATASETS/coco`` (default ``./datasets/coco``):
``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/`` (Detectron2's layout).

Detectron2's ``common/data/coco.py`` with two changes. The boxes are checked when the dataset is
loaded (``get_checked_dataset_dicts``): an invalid one fails before the first iteration naming the
file, image id and annotation id; ``dataloader.train.dataset.invalid_boxes=drop`` drops such
annotations with a count instead. No instance masks are read (box detectors)."""

from detectron2.model_zoo import get_config

from semianchor.data import get_checked_dataset_dicts

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.dataset._target_ = get_checked_dataset_dicts
dataloader.train.mapper.use_instance_mask = False
dataloader.test.dataset._target_ = get_checked_dataset_dicts
