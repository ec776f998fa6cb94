"""The quickstart RetinaNet (R-18-FPN, 64 channels, from scratch) on a COCO json from the CLI.

Small images for CPU: shortest edge 224-288 px for training, 256 px for testing (e.g. BCCD's
640x480 images become 341x256). Name the files and the class count on the command line::

    python tools/lazyconfig_train_net.py \
        --config-file configs/quickstart/retinanet_R18_coco_json.py \
        dataloader.train.dataset.json_file=/data/bccd/annotations/train.json \
        dataloader.train.dataset.image_root=/data/bccd/images \
        dataloader.test.dataset.json_file=/data/bccd/annotations/val.json \
        dataloader.test.dataset.image_root=/data/bccd/images
"""

from ..common.data.coco_json_quickstart import dataloader
from .retinanet_R18_shapes import lr_multiplier, model, optimizer, train

model.num_classes = None  # the json's number of categories (the tools read it); give it to override
train.output_dir = "./output/quickstart_retinanet_coco_json"
