"""ATSS (anchor-based) R-50-FPN, COCO 1x: 90k iterations, batch 16, lr 0.01, 800px, k = 9.
Paper (COCO minival): 39.3 AP."""

# isort: skip_file  (import order = the loaded config's top-level key order: keep it as written)
from ..common.models.atss import model
from ..common.train import train
from ..common.optim import SGD as optimizer
from ..common.coco_schedule import lr_multiplier_1x as lr_multiplier
from ..common.data.coco_single_scale import dataloader  # 800 px, as the paper

dataloader.train.mapper.use_instance_mask = False
model.backbone.bottom_up.freeze_at = 2
optimizer.lr = 0.01
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
