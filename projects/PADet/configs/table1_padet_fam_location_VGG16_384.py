"""PADet Table 1 row (b) F(X_l) (33.6 AP): one (dy, dx) learned from the APM's location change X_l
(the (dx, dy) deltas of the location's anchors), shared by the 9 taps. Full APM; FAM on D1-D4;
APM outputs detached before the offset convs (P5)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)

model.head.fam_mode = "location"
train.output_dir = "./output/padet_table1_fam_location"
