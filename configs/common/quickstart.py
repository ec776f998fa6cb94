"""The CPU quickstart recipe: what a ``configs/quickstart/<method>_R18_shapes.py`` changes in its
COCO-Detection R-50-FPN config to train in minutes on the embedded shapes dataset.

The model: ``shrink_to_quickstart`` (``semianchor.model_zoo``, the same function the tests and
benchmarks call): R-18 with BN, from scratch, 64-channel FPN and 4-conv head, 4 classes, ImageNet
std. The training: the values below, the same for every method. ``load_quickstart`` applies both
to a COCO-Detection config; a quickstart config then names only what it changes itself::

    model, dataloader, optimizer, lr_multiplier, train = load_quickstart(
        "atss_R_50_FPN_1x.py", output_dir="./output/quickstart_atss"
    )
    model.anchor_generator.sizes = [[32], [64], [128], [256], [512]]
"""

import os

from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig
from detectron2.solver import WarmupParamScheduler

# the configs import these from here
from semianchor.model_zoo import QUICKSTART_NUM_CLASSES as num_classes  # noqa: F401
from semianchor.model_zoo import shrink_to_quickstart  # noqa: F401

from .data.shapes import dataloader as shapes_dataloader

# RetinaNet-style heads (RetinaNet, Noisy-Anchor RetinaNet) get GroupNorm in their towers, as the
# ATSS/FCOS/DLA heads have by design: from scratch at 300 CPU iterations Detectron2's norm-free
# RetinaNet head barely trains (no detection above 0.05 on shapes, AP 0.65 on BCCD at 150 its,
# benchmarks/ASSIGNERS.md), which says nothing about label assignment. The COCO configs keep the
# papers' norm-free head.
retinanet_head_norm = "GN"

# batch 8 x 300 iterations ~ 5 epochs of the 470 non-empty training images; x0.1 at 75% and 90%
max_iter = 300
lr = 0.01
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=[225, 270, 300]),
    warmup_length=40 / max_iter,
    warmup_method="linear",
    warmup_factor=0.001,
)
train_overrides = dict(
    init_checkpoint="",
    max_iter=max_iter,
    eval_period=max_iter,  # evaluate once, at the end
    checkpointer=dict(period=100, max_to_keep=2),
    log_period=20,
    seed=0,
)


def load_quickstart(coco_config: str, output_dir: str):
    """``configs/COCO-Detection/<coco_config>`` after the recipe: the model shrunk by
    ``shrink_to_quickstart``, the shapes dataloader, the learning rate, schedule and training
    values above. Returns ``model, dataloader, optimizer, lr_multiplier, train`` (in the order a
    config assigns them, which is the loaded config's key order)."""
    path = os.path.join(os.path.dirname(__file__), "..", "COCO-Detection", coco_config)
    cfg = LazyConfig.load(os.path.normpath(path))
    shrink_to_quickstart(cfg.model)
    cfg.optimizer.lr = lr
    cfg.train.update(train_overrides)
    cfg.train.output_dir = output_dir
    return cfg.model, shapes_dataloader, cfg.optimizer, lr_multiplier, cfg.train
