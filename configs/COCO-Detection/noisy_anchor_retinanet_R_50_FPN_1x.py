"""Noisy-Anchor RetinaNet R-50-FPN, COCO 1x: 90k iterations, batch 16, lr 0.01, 800 px.

The paper's setting (Sec. 5.1: batch 8, lr 0.005, 180k iterations, steps at 120k/160k,
800/1333 px, flip) at Detectron2's batch 16 with the linear scaling rule: same epochs and
lr per image. Paper (COCO minival, R-50 1x): RetinaNet 36.2 -> 37.7 (Table 3, N = 50) /
38.0 AP (Table 4c, alpha = 0.75). Differs from ``retinanet_R_50_FPN_1x.py`` only by the model.
"""

from ..common.coco_schedule import lr_multiplier_1x as lr_multiplier
from ..common.data.coco_single_scale import dataloader  # 800 px, as the paper
from ..common.models.noisy_anchor_retinanet import model
from ..common.optim import SGD as optimizer
from ..common.train import train

model.backbone.bottom_up.freeze_at = 2
optimizer.lr = 0.01
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
