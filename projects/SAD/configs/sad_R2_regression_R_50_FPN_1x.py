"""SAD with R2 regression targets (choice S4): every anchor of a positive location regresses toward
the location's GT (the default R1: only positive anchors, toward their own GT)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py"
)

model.assigner.regression = "location"
