"""``noisy_anchor_faster_rcnn_R_50_FPN_1x.py`` with multi-scale training (shorter side 640-800 by
32, max 1333); the paper config itself trains at one scale (800)."""

from detectron2.config import LazyConfig

from ..common.data.coco_single_scale import multi_scale_train_augmentations

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "noisy_anchor_faster_rcnn_R_50_FPN_1x.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)
dataloader.train.mapper.augmentations = multi_scale_train_augmentations
train.output_dir = "./output/noisy_anchor_faster_rcnn_R_50_FPN_1x_ms"
