"""PADet Table 1 row (b) F(X_s) (33.4 AP): 18 offsets learned from the APM's shape scaling X_s (the
(dw, dh) deltas of the location's anchors). Full APM; FAM on D1-D4; APM outputs detached before
the offset convs (P5)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/padet_VGG16_384.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.head.fam_mode = "shape"
train.output_dir = "./output/padet_table1_fam_shape"
