"""SAD Table 4 row: location labels by Eq. 1 with gamma = 0.05 (A = 25; gamma < 1/25 equals Eq. 4,
Proposition 1)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py"
)

model.assigner.location_gamma = 0.05
