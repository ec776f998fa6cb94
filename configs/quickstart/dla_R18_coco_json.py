"""The quickstart DLA on a COCO json: its ``_shapes`` twin with the
small-image json loader; the files go on the command line
(``configs/common/data/coco_json.py`` shows how)."""

from ..common.data.coco_json_quickstart import dataloader
from ..common.data.constants import dataset_sizes
from .dla_R18_shapes import lr_multiplier, model, optimizer, train

model.num_classes = None  # the json's number of categories (the tools read it); give it to override
train.output_dir = "./output/quickstart_dla_coco_json"
# alpha's schedule (Eq. 2) for the documented example, BCCD's 292 training images at batch 8; the
# training tool replaces it with the json's real size (set it for another json and trainer)
model.iters_per_epoch = dataset_sizes["bccd_train"] / dataloader.train.total_batch_size
model.max_iter = train.max_iter
