"""PADet Table 2 row APM_C (31.0 AP): the APM's anchor scoring branch only. Its BCE trains on the
initial anchors; negatives it scores below theta = 0.01 are ignored by the detection module,
which matches and decodes the initial (unpromoted) anchors; at test time anchors below theta are
dropped. No anchor adjustment branch, no FAM."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)

model.promote = False  # no APM_R: initial anchors
model.head.apm_adjustment = False
model.head.fam_mode = "none"
train.output_dir = "./output/padet_table2_apm_c"
