"""Noisy-Anchor RetinaNet (Li et al., CVPR 2020): the RetinaNet config with cleanliness-based
labels.

Same backbone (R-50-FPN, P3-P7, P6/P7 from C5), anchors (9 per location), pixel statistics and
class count as ``retinanet.py``; the head is our ``DenseHead`` in its plain RetinaNet form (4
convs without norm, no quality branch, no per-level scale), deltas with weights 1, smooth-L1
(beta 0.1, Detectron2's RetinaNet) and focal loss (0.25, 2). Only the assignment differs:
``CleanlinessAssigner`` (top-50 anchors per GT, alpha 0.75 on loc_a, gamma 1; Table 4) instead
of the {0.4, 0.5} IoU matcher.
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from semianchor.modeling.assigners import CleanlinessAssigner
from semianchor.modeling.box_coder import DeltaBoxCoder
from semianchor.modeling.heads.dense_head import DenseHead
from semianchor.modeling.meta_arch import NoisyAnchorRetinaNet

from .retinanet import model

model._target_ = NoisyAnchorRetinaNet
del model.box2box_transform
del model.anchor_matcher
model.backbone.top_block.in_feature = "res5"  # explicit: P6 from C5 (RetinaNet)

model.head = L(DenseHead)(
    input_shape=[ShapeSpec(channels=256)] * 5,
    num_classes="${..num_classes}",
    num_anchors=9,
    conv_dims=[256, 256, 256, 256],
    norm="",
    prior_prob=0.01,
    quality=None,
    scale_per_level=False,
    regression_activation="none",
)
model.box_coder = L(DeltaBoxCoder)(weights=(1.0, 1.0, 1.0, 1.0))
model.assigner = L(CleanlinessAssigner)(
    topn=50, alpha=0.75, gamma=1.0, soft_labels=True, reweight=True, eps=0.01
)
model.box_loss_type = "smooth_l1"
model.smooth_l1_beta = 0.1
model.box_loss_weight = 1.0
model.cls_loss_weighting = "assigner"  # r weights the positives' classification loss (Eq. 5)
model.box_loss_weighting = "assigner"  # and their box loss (Eq. 6)
model.box_loss_normalizer = "positives"  # both / EMA(P): sum r = P (r has mean 1 over A_pos)
model.score_mode = "cls"
model.test_score_thresh = 0.05
model.test_topk_candidates = 1000
model.test_nms_thresh = 0.5
model.max_detections_per_image = 100
# the paper does not state the loss normaliser: |A_pos| ("positives"), or "soft_targets" /
# "retinanet_matched" (see NoisyAnchorRetinaNet)
model.normalizer_type = "positives"
