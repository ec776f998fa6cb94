"""COCO 2017 with the papers' single training scale: shorter side 800, longer side <= 1333,
horizontal flip (ATSS Sec. 4 "Implementation Details", DLA "follows ATSS", Noisy Anchors Sec. 5.1,
SAD Sec. 4). Every ``configs/COCO-Detection/*.py`` paper config uses it; the ``*_ms.py`` variants
swap in ``multi_scale_train_augmentations`` (shorter side 640-800 by 32, the multi-scale recipe of
ATSS's test-dev runs and Noisy Anchors' "multiscale training", also Detectron2's default)."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .coco import dataloader

dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333),
    L(T.RandomFlip)(horizontal=True),
]

multi_scale_train_augmentations = [
    L(T.ResizeShortestEdge)(
        short_edge_length=(640, 672, 704, 736, 768, 800), sample_style="choice", max_size=1333
    ),
    L(T.RandomFlip)(horizontal=True),
]
