"""Noisy Anchors' loss normaliser ablation on a COCO json: ``normalizer_type="positives"``
(runs and BCCD results: projects/NoisyAnchors/README.md, "Loss normaliser")."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/noisy_anchor_retinanet_R18_coco_json.py"
)
model.normalizer_type = "positives"
train.output_dir = "./output/noisy_anchor_retinanet_norm_positives_coco_json"
