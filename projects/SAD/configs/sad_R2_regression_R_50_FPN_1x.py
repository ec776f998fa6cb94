"""SAD with R2 regression targets (choice S4): every anchor of a positive location regresses toward
the location's GT (the default R1: only positive anchors, toward their own GT)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.assigner.regression = "location"
