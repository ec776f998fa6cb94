"""SAD Table 5 row: AC soft targets with sigma = 0.5 (Eq. 2; 0.0 = binary targets, the "FL" row;
the paper's default 0.9 is configs/COCO-Detection/sad_R_50_FPN_1x.py)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py"
)

model.assigner.sigma = 0.5
