"""The quickstart's small-image recipe for a COCO json given on the command line (e.g. BCCD's
640x480 images become 341x256): shortest edge 224-288 px for training, 256 px for testing,
batch 8, one worker. Every ``configs/quickstart/<method>_R18_coco_json.py`` uses it, so methods
differ only by their model."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .coco_json import dataloader

dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(224, 256, 288), sample_style="choice", max_size=512),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=256, max_size=512)
]
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 1
dataloader.test.num_workers = 1
