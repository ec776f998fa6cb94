"""The quickstart Noisy-Anchor RetinaNet on a COCO json: its ``_shapes`` twin with the
small-image json loader; the files go on the command line
(``configs/common/data/coco_json.py`` shows how)."""

from detectron2.config import LazyConfig

from .noisy_anchor_retinanet_R18_shapes import model

dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "retinanet_R18_coco_json.py", ("dataloader", "optimizer", "lr_multiplier", "train")
)
model.num_classes = None  # the json's number of categories (the tools read it); give it to override
train.output_dir = "./output/quickstart_noisy_anchor_retinanet_coco_json"
