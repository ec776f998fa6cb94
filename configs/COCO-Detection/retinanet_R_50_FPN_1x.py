"""RetinaNet R-50-FPN, COCO 1x: 90k iterations, batch 16, lr 0.01, 800 px.
Detectron2 model zoo (COCO val2017): 37.4 AP; ATSS paper baseline (#A=9): 36.5 AP."""

from ..common.coco_schedule import lr_multiplier_1x as lr_multiplier
from ..common.data.coco_single_scale import dataloader  # 800 px, as the paper
from ..common.models.retinanet import model
from ..common.optim import SGD as optimizer
from ..common.train import train

model.backbone.bottom_up.freeze_at = 2
optimizer.lr = 0.01
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
