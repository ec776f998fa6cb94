"""PADet Table 1 row (c) disentangled (34.8 AP): c = F(X_l) shared by the 9 taps + G(X_s) (18
channels), the full model (= configs/COCO-Detection/padet_VGG16_384.py). Full APM; FAM on D1-D4;
APM outputs detached before the offset convs (P5)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)

model.head.fam_mode = "disentangled"
train.output_dir = "./output/padet_table1_fam_disentangled"
