"""The quickstart PADet (R-18 encoder from scratch) on a COCO json from the command line (small-
image recipe of ``configs/common/data/coco_json_quickstart.py``), e.g. BCCD::

    python tools/lazyconfig_train_net.py --config-file configs/quickstart/padet_R18_coco_json.py \
        dataloader.train.dataset.json_file=/data/bccd/annotations/train.json \
        dataloader.train.dataset.image_root=/data/bccd/images \
        dataloader.test.dataset.json_file=/data/bccd/annotations/val.json \
        dataloader.test.dataset.image_root=/data/bccd/images
"""

from ..common.data.coco_json_quickstart import dataloader
from .padet_R18_shapes import lr_multiplier, model, optimizer, train

model.num_classes = None  # the json's number of categories (the tools read it); give it to override
train.output_dir = "./output/quickstart_padet_coco_json"
