"""SAD Table 5 row: AC soft targets with sigma = 0.1 (Eq. 2; 0.0 = binary targets, the "FL" row;
the paper's default 0.9 is configs/COCO-Detection/sad_R_50_FPN_1x.py)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.assigner.sigma = 0.1
