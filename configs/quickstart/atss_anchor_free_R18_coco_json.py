"""The quickstart atss anchor free (R-18-FPN, 64 channels, from scratch) on a COCO json named on the
command line, e.g. BCCD::

    python tools/lazyconfig_train_net.py \
        --config-file configs/quickstart/atss_anchor_free_R18_coco_json.py \
        dataloader.train.dataset.json_file=/data/bccd/annotations/train.json \
        dataloader.train.dataset.image_root=/data/bccd/images \
        dataloader.test.dataset.json_file=/data/bccd/annotations/val.json \
        dataloader.test.dataset.image_root=/data/bccd/images
"""

from ..common.data.coco_json_quickstart import dataloader
from .atss_anchor_free_R18_shapes import lr_multiplier, model, optimizer, train

model.num_classes = None  # the json's number of categories (the tools read it); give it to override
train.output_dir = "./output/quickstart_atss_anchor_free_coco_json"
