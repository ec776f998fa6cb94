"""The quickstart RetinaNet on a COCO json: its ``_shapes`` twin with the
small-image json loader; the files go on the command line
(``configs/common/data/coco_json.py`` shows how)."""

from ..common.data.coco_json_quickstart import dataloader
from .retinanet_R18_shapes import lr_multiplier, model, optimizer, train

model.num_classes = None  # the json's number of categories (the tools read it); give it to override
train.output_dir = "./output/quickstart_retinanet_coco_json"
