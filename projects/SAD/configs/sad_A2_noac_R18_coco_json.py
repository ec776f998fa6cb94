"""Table 2's "without AC" row at the quickstart budget: A = 2, no anchor-classification head (no
AC loss); at test time one random anchor per location (fixed seed) carries the location
probability, as the paper's ablation ("a random anchor ... best of 10 runs": we report one)."""

from .sad_A2_R18_coco_json import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.head.anchor_classification = False
train.output_dir = "./output/sad_A2_noac_coco_json"
