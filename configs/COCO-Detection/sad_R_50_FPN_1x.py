"""Semi-Anchored Detector R-50-FPN (GN head), COCO 1x: 90k iterations, batch 16, lr 0.01, single
scale 800 px, A = 25. Paper (COCO val, Table 1): 39.6 AP (RetinaNet #A=9: 35.9).

Warm-up: not in the paper, which "is implemented within" maskrcnn-benchmark with "all other
settings ... as in the standard RetinaNet": that codebase's default, linear over 500 iterations
from 1/3 of the lr (our choice: the paper states none), not Detectron2's 1000 iterations from
0.001."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from ..common.coco_schedule import lr_multiplier_1x as lr_multiplier
from ..common.data.coco import dataloader
from ..common.models.sad import model
from ..common.optim import SGD as optimizer
from ..common.train import train

dataloader.train.mapper.use_instance_mask = False
dataloader.train.mapper.augmentations = [  # "A single image scale of 800", flip only (Sec. 4)
    L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333),
    L(T.RandomFlip)(horizontal=True),
]
model.backbone.bottom_up.freeze_at = 2
optimizer.lr = 0.01
lr_multiplier.warmup_length = 500 / train.max_iter  # maskrcnn-benchmark: WARMUP_ITERS 500
lr_multiplier.warmup_factor = 1.0 / 3  # WARMUP_FACTOR 1/3, WARMUP_METHOD "linear"
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
