"""PADet Table 2 row APM + FAM (34.8 AP): the full model, i.e.
configs/COCO-Detection/padet_VGG16_384.py (disentangled offsets on D1-D4, APM detached). Also
Table 1's row (c)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/padet_VGG16_384.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

train.output_dir = "./output/padet_table2_apm_fam"
