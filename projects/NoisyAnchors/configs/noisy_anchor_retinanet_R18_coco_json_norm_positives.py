"""Noisy Anchors' loss normaliser ablation (the paper does not state it), on a COCO json such as
BCCD: ``configs/quickstart/noisy_anchor_retinanet_R18_coco_json.py`` with
``model.normalizer_type="positives"`` (see ``NoisyAnchorRetinaNet``); BCCD results
in projects/NoisyAnchors/README.md ("Loss normaliser"). Run alone, e.g.

    python tools/lazyconfig_train_net.py --config-file \
        projects/NoisyAnchors/configs/noisy_anchor_retinanet_R18_coco_json_norm_positives.py \
        dataloader.train.dataset.json_file=$BCCD/annotations/train.json \
        dataloader.train.dataset.image_root=$BCCD/images \
        dataloader.test.dataset.json_file=$BCCD/annotations/val.json \
        dataloader.test.dataset.image_root=$BCCD/images
"""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/quickstart/noisy_anchor_retinanet_R18_coco_json.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)
model.normalizer_type = "positives"
train.output_dir = "./output/noisy_anchor_retinanet_norm_positives_coco_json"
