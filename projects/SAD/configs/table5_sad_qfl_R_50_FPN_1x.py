"""SAD AC-loss ablation (not in the paper): the QFL-style soft focal loss BCE(p, mu_hat) *
|mu_hat - p|^beta instead of Eq. 3."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.ac_loss = "qfl"
