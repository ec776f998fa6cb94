"""Noisy Anchors' loss normaliser ablation on a COCO json: ``normalizer_type="soft_targets"``
(runs and BCCD results: projects/NoisyAnchors/README.md, "Loss normaliser")."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/noisy_anchor_retinanet_R18_coco_json.py"
)
model.normalizer_type = "soft_targets"
train.output_dir = "./output/noisy_anchor_retinanet_norm_soft_targets_coco_json"
