"""SAD at the quickstart budget with the QFL-style AC loss, BCE(p, mu_hat) * |mu_hat - p|^beta,
instead of Eq. 3 taken literally (whose positive term is zero at p = mu_hat and as p -> 1)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/sad_R18_coco_json.py"
)

model.ac_loss = "qfl"
train.output_dir = "./output/sad_qfl_coco_json"
