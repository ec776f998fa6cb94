"""PADet Table 1 row (a) implicit (32.8 AP): a standard DCN on D1-D4 whose offsets
come from the detection features themselves (a 1x1 conv, zero-initialised), not from the APM.
Full APM."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/padet_VGG16_384.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.head.fam_mode = "implicit"
train.output_dir = "./output/padet_table1_fam_implicit"
