"""The quickstart DLA (R-18-FPN, 64 channels, from scratch) on a COCO json named on the command
line (e.g. BCCD): ``dla_R18_shapes.py``'s model and schedule with the small-image COCO-json data
recipe of ``retinanet_R18_coco_json.py`` (shortest edge 224-288 px for training, 256 px for
testing, batch 8). alpha's epochs come from the json's size (the training tool sets them)::

    python tools/lazyconfig_train_net.py --config-file configs/quickstart/dla_R18_coco_json.py \
        dataloader.train.dataset.json_file=/data/bccd/annotations/train.json \
        dataloader.train.dataset.image_root=/data/bccd/images \
        dataloader.test.dataset.json_file=/data/bccd/annotations/val.json \
        dataloader.test.dataset.image_root=/data/bccd/images
"""

from ..common.data.coco_json_quickstart import dataloader
from ..common.data.constants import dataset_sizes
from .dla_R18_shapes import lr_multiplier, model, optimizer, train

model.num_classes = None  # the json's number of categories (the tools read it); give it to override
train.output_dir = "./output/quickstart_dla_coco_json"
# alpha's schedule (Eq. 2) for the documented example, BCCD's 292 training images at batch 8; the
# training tool replaces it with the json's real size (set it for another json and trainer)
model.iters_per_epoch = dataset_sizes["bccd_train"] / dataloader.train.total_batch_size
model.max_iter = train.max_iter
