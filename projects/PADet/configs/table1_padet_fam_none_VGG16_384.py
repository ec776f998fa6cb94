"""PADet Table 1 row "w/o alignment" (31.7 AP): the full APM and a plain 3x3 conv
where the FAM would be (= Table 2 row APM)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/padet_VGG16_384.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.head.fam_mode = "none"
train.output_dir = "./output/padet_table1_fam_none"
