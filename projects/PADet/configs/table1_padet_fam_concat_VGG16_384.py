"""PADet Table 1 row (b) F(X_l; X_s) (34.1 AP): 18 offsets learned from X_l and X_s concatenated.
Full APM; FAM on D1-D4; APM outputs detached before the offset convs (P5)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)

model.head.fam_mode = "concat"
train.output_dir = "./output/padet_table1_fam_concat"
