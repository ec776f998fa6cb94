"""PADet Table 2 row 1, the baseline ("vanilla DSSD", 29.6 AP): the encoder-decoder with no APM at
all (neither the anchor scoring nor the anchor adjustment branch: the detection module matches
and decodes the initial SSD anchors, no theta rule, no test-time gate) and no FAM (a plain 3x3
conv). Softmax CE with 3:1 hard-negative mining and soft-NMS as the full model."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)

model.promote = False  # no APM_R: initial anchors
model.theta = None  # no APM_C: no theta rule, no gate
model.head.apm_scoring = False
model.head.apm_adjustment = False
model.head.fam_mode = "none"
train.output_dir = "./output/padet_table2_baseline"
