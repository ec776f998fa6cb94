"""SAD Table 3 row "FCOS" (37.8 AP in the paper vs 39.6 for Eq. 4): the positive locations are
every location inside a GT whose largest distance to the box's sides fits its level's range
(FCOS's rule), instead of the locations with a positive anchor (Eq. 4). Anchors, R1 regression,
AC labels and losses unchanged."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py"
)

model.assigner.location_rule = "fcos"
