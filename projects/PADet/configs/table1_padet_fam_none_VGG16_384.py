"""PADet Table 1 row "w/o alignment" (31.7 AP): the full APM and a plain 3x3 conv
where the FAM would be (= Table 2 row APM)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)

model.head.fam_mode = "none"
train.output_dir = "./output/padet_table1_fam_none"
