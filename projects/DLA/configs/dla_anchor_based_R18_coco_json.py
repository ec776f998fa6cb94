"""DLA, anchor-based variant, on a COCO json from the command line (e.g. BCCD): differs from
configs/quickstart/atss_R18_coco_json.py (anchor-based ATSS) only by what DLA changes."""

from detectron2.config import LazyConfig

from .dla_anchor_based_R18_shapes import model

dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/quickstart/dla_R18_coco_json.py",
    ("dataloader", "optimizer", "lr_multiplier", "train"),
)
model.num_classes = None  # the json's number of categories (the tools read it); give it to override
train.output_dir = "./output/quickstart_dla_anchor_based_coco_json"
