"""SAD Table 6 row: inference strategy top2 (evaluate a model trained with the default config;
the strategy only changes inference)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py"
)

model.inference = "topk"
model.inference_topk = 2
