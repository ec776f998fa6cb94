"""Semi-Anchored Detector (Chen, Qian, Li 2020), the paper's R-50-FPN setting (our choices
S1-S16: projects/SAD/DESIGN.md).

RetinaNet's backbone with the FCOS improvements the paper adopts (P6/P7 from P5, GN in the head
towers), A = 5 scales x 5 ratios = 25 anchors per location: base size 4 x stride (32-512 on
P3-P7, maskrcnn-benchmark's RetinaNet), scales 2^(i/5), ratios {1/3, 1/2, 1, 2, 3} (S1: the paper
gives no values). Location classification (K per location), deltas (weights 10, 10, 5, 5; S7)
and AC logits per anchor on the regression tower. Labels: max-IoU 0.5 without ignore band, with
low-quality matches (S2); Eq. 4 locations; R1 regression (S4); AC targets with sigma 0.9.
Losses: focal (0.25, gamma 1) / positive locations, 2 x -ln(IoU), 1 x Eq. 3. Test: p_loc x p_ac of
the top-1 anchor per location, gate 0.05, 1000 per level, NMS 0.4 (S11), 100 detections.
"""

from detectron2.config import LazyCall as L
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

from semianchor.modeling.assigners import MaxIoUAssigner, SADAssigner
from semianchor.modeling.heads.sad_head import SADHead
from semianchor.modeling.meta_arch import SemiAnchoredDetector

from .atss import model

NUM_SCALES, RATIOS = 5, [1 / 3, 1 / 2, 1.0, 2.0, 3.0]

model._target_ = SemiAnchoredDetector
model.head._target_ = SADHead
model.head.num_anchors = NUM_SCALES * len(RATIOS)
model.head.quality = None  # no centerness branch in SAD
model.head.scale_per_level = False  # not mentioned by the paper
model.head.cls_per_location = True
model.head.anchor_classification = True
model.anchor_generator = L(DefaultAnchorGenerator)(
    sizes=[
        [4 * s * 2 ** (i / NUM_SCALES) for i in range(NUM_SCALES)] for s in (8, 16, 32, 64, 128)
    ],
    aspect_ratios=[RATIOS],
    strides=[8, 16, 32, 64, 128],
    offset=0.0,
)
model.assigner = L(SADAssigner)(
    matcher=L(MaxIoUAssigner)(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=True),
    location_gamma=None,  # Eq. 4; a float < 1 gives Eq. 1 (Table 4)
    location_rule="anchors",  # "fcos" / "fcos_shrink": Table 3
    regression="anchor",  # R1; "location" = R2 (choice S4)
    ac_iou_threshold=0.5,
    sigma=0.9,  # Eq. 2 (Table 5)
)
model.focal_loss_gamma = 1.0  # "(alpha, beta) = (0.25, 1) ... in location classification"
model.box_loss_type = "log_iou"  # UnitBox -ln(IoU)
model.box_loss_weight = 2.0  # lambda_reg
model.box_loss_weighting = "none"
del model.quality_loss_weight
model.score_mode = "cls"
model.ac_loss = "eq3"
model.ac_loss_weight = 1.0  # lambda_ac
model.ac_alpha = 0.25
model.ac_beta = 2.0
model.inference = "top1"  # Table 6
model.noac_draw = 0  # without the AC head (Table 2): which per-image random anchor pick
model.test_nms_thresh = 0.4  # maskrcnn-benchmark RetinaNet (S11)
