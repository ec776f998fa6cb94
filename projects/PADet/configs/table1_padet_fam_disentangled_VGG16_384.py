"""PADet Table 1 row (c) disentangled (34.8 AP): c = F(X_l) shared by the 9 taps + G(X_s) (18
channels), the full model (= configs/COCO-Detection/padet_VGG16_384.py). Full APM; FAM on D1-D4;
APM outputs detached before the offset convs (P5)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/padet_VGG16_384.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.head.fam_mode = "disentangled"
train.output_dir = "./output/padet_table1_fam_disentangled"
