"""ATSS, anchor-based: "RetinaNet #A=1 + improvements" + ATSS assignment (Zhang et al. 2020).

One square anchor of 8 x stride per location, GN head towers, per-level scale, centerness
branch, GIoU loss (weight 2, weighted by the centerness target), focal loss, P6/P7 from P5.
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from semianchor.modeling import ATSS, ATSSAssigner, DeltaBoxCoder, DenseHead

model = L(ATSS)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True, norm="FrozenBN"),
            out_features=["res3", "res4", "res5"],
        ),
        in_features=["res3", "res4", "res5"],
        out_channels=256,
        # P6/P7 from P5 (ATSS Sec. 4.2 / FCOS improvements), not from C5 as in RetinaNet
        top_block=L(LastLevelP6P7)(
            in_channels="${..out_channels}", out_channels="${..out_channels}", in_feature="p5"
        ),
    ),
    head=L(DenseHead)(
        input_shape=[ShapeSpec(channels=256)] * 5,
        num_classes="${..num_classes}",
        num_anchors=1,
        conv_dims=[256, 256, 256, 256],
        norm="GN",
        prior_prob=0.01,
        quality="centerness",
        scale_per_level=True,
        regression_activation="none",
    ),
    anchor_generator=L(DefaultAnchorGenerator)(
        sizes=[[64], [128], [256], [512], [1024]],  # 8 x stride (ATSS: anchor scale 8)
        aspect_ratios=[1.0],
        strides=[8, 16, 32, 64, 128],
        offset=0.0,
    ),
    box_coder=L(DeltaBoxCoder)(weights=(10.0, 10.0, 5.0, 5.0)),
    assigner=L(ATSSAssigner)(topk=9, center_eps=0.01),
    num_classes=80,
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    focal_loss_alpha=0.25,
    focal_loss_gamma=2.0,
    box_loss_type="giou",
    box_loss_weight=2.0,
    box_loss_weighting="centerness",
    quality_loss_weight=1.0,
    score_mode="sqrt_cls_quality",
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.6,
    max_detections_per_image=100,
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)
