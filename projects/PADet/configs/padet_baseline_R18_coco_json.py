"""Table 2's baseline row at the quickstart budget: padet_apm_fam_R18_coco_json.py with no APM
(no anchor scoring or adjustment branch: initial anchors, no theta rule or gate) and no FAM."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/padet_R18_coco_json.py"
)

model.promote = False
model.theta = None
model.head.apm_scoring = False
model.head.apm_adjustment = False
model.head.fam_mode = "none"
train.output_dir = "./output/padet_baseline_coco_json"
