"""``noisy_anchor_faster_rcnn_R_50_FPN_1x.py`` with multi-scale training (shorter side 640-800 by
32, max 1333); the paper config itself trains at one scale (800)."""

from semianchor.model_zoo import load_base

from ..common.data.coco_single_scale import multi_scale_train_augmentations

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "noisy_anchor_faster_rcnn_R_50_FPN_1x.py"
)
dataloader.train.mapper.augmentations = multi_scale_train_augmentations
train.output_dir = "./output/noisy_anchor_faster_rcnn_R_50_FPN_1x_ms"
