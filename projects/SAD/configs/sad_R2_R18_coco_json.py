"""SAD at the quickstart budget with R2 regression targets: every anchor of a positive location
regresses toward the location's GT (the default R1: only the anchors positive before
regression, toward their own GT). The log's ``sad/iou_after_reg_nonpos_anchors`` shows what the
extra anchors learn."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/sad_R18_coco_json.py"
)

model.assigner.regression = "location"
train.output_dir = "./output/sad_R2_coco_json"
