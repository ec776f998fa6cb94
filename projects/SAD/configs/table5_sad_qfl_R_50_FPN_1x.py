"""SAD AC-loss ablation (not in the paper): the QFL-style soft focal loss BCE(p, mu_hat) *
|mu_hat - p|^beta instead of Eq. 3."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py"
)

model.ac_loss = "qfl"
