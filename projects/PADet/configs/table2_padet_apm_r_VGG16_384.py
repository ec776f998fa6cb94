"""PADet Table 2 row APM_R (30.6 AP): the APM's anchor adjustment branch only. The detection
module matches and decodes the promoted anchors; no anchor scoring branch (no theta rule, no
test-time gate), no FAM."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)

model.theta = None  # no APM_C
model.head.apm_scoring = False
model.head.fam_mode = "none"
train.output_dir = "./output/padet_table2_apm_r"
