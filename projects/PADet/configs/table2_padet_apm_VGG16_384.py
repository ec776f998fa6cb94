"""PADet Table 2 row APM (31.7 AP): the full APM (anchor scoring with the theta rule + anchor
adjustment), no feature alignment (a plain 3x3 conv where the FAM would be). Also Table 1's
"w/o alignment" row."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)

model.head.fam_mode = "none"
train.output_dir = "./output/padet_table2_apm"
