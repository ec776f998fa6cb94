"""Faster R-CNN R-50-FPN whose RPN is trained with cleanliness soft labels and re-weighting
("Learning from Noisy Anchors", Sec. 5.3, Tables 5-6), COCO 1x: 90k iterations, batch 16,
lr 0.02 (the paper's 0.01 at batch 8), 800 px.

Detectron2's model-zoo Faster R-CNN (``common/models/mask_rcnn_fpn.py`` without the mask branch)
with ``NoisyAnchorRPN`` in place of ``RPN``: same head, anchors (3 per location), sampling (256
anchors per image, half positive at most), proposals and ROI heads. The baseline is the same file
with ``model.proposal_generator._target_`` back to Detectron2's ``RPN`` (and its matcher).
Paper (COCO minival): AP 36.8 -> 37.8 (Table 6); RPN AR100 43.3 -> 51.1 (Table 5).
"""

from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from semianchor.modeling.assigners import CleanlinessAssigner
from semianchor.modeling.proposal_generator import NoisyAnchorRPN

from ..common.coco_schedule import lr_multiplier_1x as lr_multiplier
from ..common.data.coco_single_scale import dataloader  # 800 px, as the paper
from ..common.optim import SGD as optimizer
from ..common.train import train

model = get_config("common/models/mask_rcnn_fpn.py").model
model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)

model.proposal_generator._target_ = NoisyAnchorRPN
del model.proposal_generator.anchor_matcher  # replaced by the assigner
model.proposal_generator.assigner = L(CleanlinessAssigner)(
    topn=50, alpha=0.75, gamma=1.0, soft_labels=True, reweight=True, eps=0.01
)

model.backbone.bottom_up.freeze_at = 2
optimizer.lr = 0.02
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
