"""PADet Table 2 row APM + FAM (34.8 AP): the full model, i.e.
configs/COCO-Detection/padet_VGG16_384.py (disentangled offsets on D1-D4, APM detached). Also
Table 1's row (c)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)

train.output_dir = "./output/padet_table2_apm_fam"
