"""The CPU quickstart recipe: what a ``configs/quickstart/<method>_R18_shapes.py`` changes in its
COCO-Detection R-50-FPN config to train in minutes on the embedded shapes dataset.

A quickstart config loads the COCO config, then assigns these values (plain assignments, so every
method shrinks the same way)::

    model.backbone.bottom_up = bottom_up
    model.backbone.out_channels = fpn_channels
    model.head.input_shape = head_input_shape
    model.head.conv_dims = head_conv_dims
    model.num_classes = num_classes
    model.pixel_std = pixel_std
    dataloader = shapes_dataloader
    optimizer.lr = lr
    lr_multiplier = lr_multiplier
    train.update(train_overrides)

plus ``model.backbone.top_block.in_channels = res5_channels`` when P6 is computed from C5
(RetinaNet) rather than from P5 (FCOS, ATSS: it follows ``out_channels`` there).
"""

from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.solver import WarmupParamScheduler

from .data.shapes import dataloader as shapes_dataloader

# R-18, trained from scratch (nothing to download): BN everywhere, nothing frozen
bottom_up = L(ResNet)(
    stem=L(BasicStem)(in_channels=3, out_channels=64, norm="BN"),
    stages=L(ResNet.make_default_stages)(depth=18, norm="BN"),
    out_features=["res3", "res4", "res5"],
    freeze_at=0,
)
res5_channels = 512  # R-18's C5 width
fpn_channels = 64
head_input_shape = [ShapeSpec(channels=fpn_channels)] * 5  # P3-P7
head_conv_dims = [fpn_channels] * 4
num_classes = 4  # rectangle, ellipse, triangle, ring
# RetinaNet-style heads (RetinaNet, Noisy-Anchor RetinaNet) get GroupNorm in their towers, as the
# ATSS/FCOS/DLA heads have by design: from scratch at 300 CPU iterations Detectron2's norm-free
# RetinaNet head barely trains (no detection above 0.05 on shapes, AP 0.65 on BCCD at 150 its,
# benchmarks/ASSIGNERS.md), which says nothing about label assignment. The COCO configs keep the
# papers' norm-free head.
retinanet_head_norm = "GN"
pixel_std = [57.375, 57.120, 58.395]  # ImageNet std (BGR): no Caffe weights to match

# batch 8 x 300 iterations ~ 5 epochs of the 470 non-empty training images; x0.1 at 75% and 90%
max_iter = 300
lr = 0.01
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=[225, 270, 300]),
    warmup_length=40 / max_iter,
    warmup_method="linear",
    warmup_factor=0.001,
)
train_overrides = dict(
    init_checkpoint="",
    max_iter=max_iter,
    eval_period=max_iter,  # evaluate once, at the end
    checkpointer=dict(period=100, max_to_keep=2),
    log_period=20,
    seed=0,
)
