"""The quickstart Noisy-Anchor RetinaNet on a COCO json from the CLI (e.g. BCCD): the twin of
``retinanet_R18_coco_json.py`` (same images sizes, batch, schedule), differing only by the model.

    python tools/lazyconfig_train_net.py \
        --config-file configs/quickstart/noisy_anchor_retinanet_R18_coco_json.py \
        dataloader.train.dataset.json_file=/data/bccd/annotations/train.json \
        dataloader.train.dataset.image_root=/data/bccd/images \
        dataloader.test.dataset.json_file=/data/bccd/annotations/val.json \
        dataloader.test.dataset.image_root=/data/bccd/images
"""

from detectron2.config import LazyConfig

from .noisy_anchor_retinanet_R18_shapes import model

dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "retinanet_R18_coco_json.py", ("dataloader", "optimizer", "lr_multiplier", "train")
)
model.num_classes = None  # the json's number of categories (the tools read it); give it to override
train.output_dir = "./output/quickstart_noisy_anchor_retinanet_coco_json"
