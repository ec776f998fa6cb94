"""PADet Table 1 row (b) F(X_l) (33.6 AP): one (dy, dx) learned from the APM's location change X_l
(the (dx, dy) deltas of the location's anchors), shared by the 9 taps. Full APM; FAM on D1-D4;
APM outputs detached before the offset convs (P5)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/padet_VGG16_384.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.head.fam_mode = "location"
train.output_dir = "./output/padet_table1_fam_location"
