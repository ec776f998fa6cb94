"""Noisy Anchors' loss normaliser ablation on a COCO json: ``normalizer_type="retinanet_matched"``
(runs and BCCD results: projects/NoisyAnchors/README.md, "Loss normaliser")."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/noisy_anchor_retinanet_R18_coco_json.py"
)
model.normalizer_type = "retinanet_matched"
train.output_dir = "./output/noisy_anchor_retinanet_norm_retinanet_matched_coco_json"
