"""SAD Table 6 row: inference strategy pos0p2 (evaluate a model trained with the default config;
the strategy only changes inference)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.inference = "pos"
model.inference_tau = 0.2
