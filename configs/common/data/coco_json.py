"""Any COCO-format detection dataset, given on the command line: no code needed.

Set the files as overrides (the configs that use this file set ``model.num_classes = None``: the
class count is read from the training json's categories; a number given is kept, and is an error
when smaller than the json's count), e.g.::

    python tools/lazyconfig_train_net.py \
        --config-file configs/quickstart/retinanet_R18_coco_json.py \
        dataloader.train.dataset.json_file=/data/bccd/annotations/train.json \
        dataloader.train.dataset.image_root=/data/bccd/images \
        dataloader.test.dataset.json_file=/data/bccd/annotations/val.json \
        dataloader.test.dataset.image_root=/data/bccd/images

Each split is registered under its ``name`` on first use (default ``coco_json_train`` /
``coco_json_val``), so ``COCOEvaluator`` evaluates against the json itself. Resizing follows
Detectron2's COCO recipe (shortest edge 640-800, max 1333); small-image configs override it.
"""

from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_test_loader, build_detection_train_loader
from detectron2.evaluation import COCOEvaluator

from semianchor.data import get_coco_json_dicts

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    # invalid_boxes: a flipped / non-finite box fails the load ("error", naming file, image and
    # annotation ids) or is dropped with a count in the log ("drop")
    dataset=L(get_coco_json_dicts)(
        name="coco_json_train", json_file="", image_root="", invalid_boxes="error"
    ),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(
                short_edge_length=(640, 672, 704, 736, 768, 800),
                sample_style="choice",
                max_size=1333,
            ),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
    ),
    total_batch_size=16,
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_coco_json_dicts)(
        name="coco_json_val", json_file="", image_root="", filter_empty=False
    ),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)

dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.name}")
