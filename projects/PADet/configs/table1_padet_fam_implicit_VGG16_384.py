"""PADet Table 1 row (a) implicit (32.8 AP): a standard DCN on D1-D4 whose offsets
come from the detection features themselves (a 1x1 conv, zero-initialised), not from the APM.
Full APM."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)

model.head.fam_mode = "implicit"
train.output_dir = "./output/padet_table1_fam_implicit"
