"""PADet, VGG-16 at 384 x 384 (Tang et al. 2019; the network is a reconstruction,
projects/PADet/DESIGN.md).

SSD VGG-16 encoder (conv4_3, fc7, 3 extra blocks) + U-Net decoder (256 channels, D1-D6 at
48, 24, 12, 6, 3, 1), SSD priors (6 per location on D1-D4, 4 on D5-D6: 18,400 anchors; sizes
of SSD300-COCO scaled to 384, P3), APM + FAM (disentangled, D1-D4) head, the two matchings (IoU
0.5 / 0.3, theta 0.01), softmax CE + smooth-L1 (beta 1) with 3:1 hard-negative mining
(``loss_mode="ohem"``; ``"paper"`` with both ratios 0 is Sec. 3.3 literally), soft-NMS.

The Table 2 switches (projects/PADet/configs): ``model.promote`` (APM_R) and ``model.theta``
(APM_C; None: off) are read by the promoted-anchor stage of the assigner too (interpolated), and
``model.head.apm_adjustment`` / ``apm_scoring`` build the matching APM branches (the model checks
that they agree). Table 1: ``model.head.fam_mode`` and ``fam_grad_mul``.
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from semianchor.modeling.anchors import SSDAnchorGenerator, ssd_sizes
from semianchor.modeling.assigners import MaxIoUAssigner, StagedAssigner
from semianchor.modeling.assigners.padet import PromotedAnchorAssigner
from semianchor.modeling.backbone.encoder_decoder import EncoderDecoder, VGG16Encoder
from semianchor.modeling.box_coder import DeltaBoxCoder
from semianchor.modeling.heads.padet_head import PADetHead
from semianchor.modeling.meta_arch.padet import PADet

INPUT_SIZE = 384
MIN_SIZES, MAX_SIZES = ssd_sizes(INPUT_SIZE, [0.07, 0.15, 0.33, 0.51, 0.69, 0.87])
RATIOS_6, RATIOS_4 = [1.0, 2.0, 3.0, 1 / 2, 1 / 3], [1.0, 2.0, 1 / 2]  # + SSD's extra square
LEVELS = ["d1", "d2", "d3", "d4", "d5", "d6"]

model = L(PADet)(
    backbone=L(EncoderDecoder)(encoder=L(VGG16Encoder)(width=1.0, num_extra=3), channels=256),
    head=L(PADetHead)(
        input_shape=[ShapeSpec(channels=256)] * 6,
        num_classes="${..num_classes}",
        num_anchors=[6, 6, 6, 6, 4, 4],
        fam_mode="disentangled",  # Table 1 (c)
        fam_levels=4,  # "we do not apply the FAM to the last 2 layers"
        fam_grad_mul=0.0,  # P5: APM outputs detached before F and G
        fam_impl="auto",  # deformable conv: our multi-threaded one on CPU, torchvision on CUDA
        fam_offset_grad_mul=1.0,  # gradient scale on the offset branch (0: offsets frozen at 0)
        prior_prob=0.01,
        apm_scoring=True,  # APM_C: the anchor scoring branch (needs model.theta)
        apm_adjustment=True,  # APM_R: the anchor adjustment branch (needs model.promote)
    ),
    head_in_features=LEVELS,
    anchor_generator=L(SSDAnchorGenerator)(
        min_sizes=MIN_SIZES,
        max_sizes=MAX_SIZES,
        aspect_ratios=[RATIOS_6] * 4 + [RATIOS_4] * 2,
        strides=[8, 16, 32, 64, 128, 384],
        offset=0.5,
    ),
    box_coder=L(DeltaBoxCoder)(weights=(10.0, 10.0, 5.0, 5.0)),  # SSD variances (0.1, 0.2)
    assigner=L(StagedAssigner)(
        stages=[
            ("initial", L(MaxIoUAssigner)(thresholds=[0.3, 0.5], labels=[0, -1, 1])),
            (
                "promoted",
                L(PromotedAnchorAssigner)(
                    thresholds=[0.3, 0.5],
                    labels=[0, -1, 1],
                    promote="${.....promote}",  # = model.promote
                    theta="${.....theta}",  # = model.theta
                ),
            ),
        ]
    ),
    num_classes=80,
    promote=True,  # APM_R: match and decode on the promoted anchors
    theta=0.01,  # APM_C: the theta rule (training) and the APM gate (test)
    loss_mode="ohem",  # "paper": no mining, / this step's positive counts (ratios 0)
    neg_pos_ratio=3.0,
    apm_neg_pos_ratio=3.0,
    soft_nms=dict(method="linear", iou_threshold=0.3, sigma=0.5, min_score=0.001),
    test_score_thresh=0.01,
    test_topk_candidates=1000,
    max_detections_per_image=300,
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[57.375, 57.120, 58.395],
    input_format="BGR",
)
