"""Access the configs shipped in ``configs/`` by their path, like ``detectron2.model_zoo``.

from semianchor import model_zoo
cfg = model_zoo.get_config("COCO-Detection/atss_R_50_FPN_1x.py")       # LazyConfig
cfg = model_zoo.get_config("yacs/ATSS_R_50_FPN_1x.yaml")                # yacs CfgNode

and shrink a COCO-Detection R-50-FPN model to the CPU quickstart model, the one recipe of
``configs/quickstart/*_R18_shapes.py``, the tests and the benchmarks::

cfg.model = model_zoo.shrink_to_quickstart(cfg.model)

A config that changes another one starts from ``load_base``:

from semianchor.model_zoo import load_base
model, dataloader, optimizer, lr_multiplier, train = load_base("sad_R_50_FPN_1x.py")
"""

import os
import sys

from detectron2.config import LazyConfig, get_cfg
from detectron2.layers import ShapeSpec

from .config import add_semianchor_config

__all__ = [
    "get_config_file",
    "get_config",
    "load_base",
    "set_anchor_grid",
    "set_padet_paper_loss",
    "shrink_to_quickstart",
    "shrink_yacs_to_quickstart",
]

BASE_NODES = ("model", "dataloader", "optimizer", "lr_multiplier", "train")


def _config_root() -> str:
    """``semianchor/configs`` in an installed package (setup.py ships ``configs/`` there), else
    the checkout's ``configs/`` beside the package."""
    here = os.path.dirname(os.path.abspath(__file__))
    packaged = os.path.join(here, "configs")
    return packaged if os.path.isdir(packaged) else os.path.join(os.path.dirname(here), "configs")


_CONFIG_ROOT = _config_root()


def get_config_file(config_path: str) -> str:
    path = os.path.join(_CONFIG_ROOT, config_path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{config_path} is not a semianchor config (looked in {_CONFIG_ROOT})"
        )
    return path


def get_config(config_path: str):
    path = get_config_file(config_path)
    if path.endswith(".py"):
        return LazyConfig.load(path)
    cfg = add_semianchor_config(get_cfg())
    cfg.merge_from_file(path)
    return cfg


# The CPU quickstart model: R-18 trained from scratch (nothing to download), 64-channel FPN/head
QUICKSTART_DEPTH = 18
QUICKSTART_RES5_CHANNELS = 512  # R-18's C5 width (RetinaNet's P6 is computed from C5)
QUICKSTART_CHANNELS = 64
QUICKSTART_NUM_CLASSES = 4  # the embedded shapes dataset: rectangle, ellipse, triangle, ring
QUICKSTART_HEAD_CONVS = 4
# ImageNet std (BGR, 0-255): the COCO configs' std of 1 matches MSRA's Caffe R-50 weights, which a
# model trained from scratch does not load
IMAGENET_BGR256_STD = [57.375, 57.120, 58.395]


def shrink_to_quickstart(
    model,
    num_classes: int = QUICKSTART_NUM_CLASSES,
    head_convs: int = QUICKSTART_HEAD_CONVS,
    pixel_std=IMAGENET_BGR256_STD,
):
    """Shrink a LazyConfig R-50-FPN model (``cfg.model`` of a ``configs/COCO-Detection`` config)
    in place to the CPU quickstart model and return it: R-18 with BN everywhere and nothing
    frozen (trained from scratch), a 64-channel FPN, then for a one-stage detector a head of
    ``head_convs`` 64-channel convs on P3-P7, for a Faster R-CNN a 64-channel RPN head and a
    64-d two-fc box head, ``num_classes`` classes, and ``pixel_std`` (None keeps the config's).

    The quickstart configs use the defaults; the tests and ``benchmarks/loss_equivalence.py``
    use a 2-conv head and keep the config's std."""
    bottom_up = model.get("backbone", {}).get("bottom_up")
    if bottom_up is None or "stages" not in bottom_up or "stem" not in bottom_up:
        raise ValueError(
            "shrink_to_quickstart needs a ResNet-FPN model config (model.backbone.bottom_up with "
            f"stem and stages); got backbone {model.get('backbone')!r}"
        )
    bottom_up.stem.norm = "BN"
    bottom_up.stages.depth = QUICKSTART_DEPTH
    bottom_up.stages.pop("stride_in_1x1", None)  # R-18's basic blocks have no 1x1 conv
    bottom_up.stages.norm = "BN"
    bottom_up.freeze_at = 0
    model.backbone.out_channels = QUICKSTART_CHANNELS
    if "roi_heads" in model:
        model.proposal_generator.head.in_channels = QUICKSTART_CHANNELS
        model.roi_heads.num_classes = num_classes
        model.roi_heads.box_head.input_shape = ShapeSpec(
            channels=QUICKSTART_CHANNELS, height=7, width=7
        )
        model.roi_heads.box_head.fc_dims = [QUICKSTART_CHANNELS] * 2
        model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=QUICKSTART_CHANNELS)
    else:
        top_block = model.backbone.get("top_block")
        if top_block is not None and top_block.get("in_feature", "res5") == "res5":
            top_block.in_channels = QUICKSTART_RES5_CHANNELS  # from P5 it follows out_channels
        model.head.input_shape = [ShapeSpec(channels=QUICKSTART_CHANNELS)] * 5  # P3-P7
        model.head.conv_dims = [QUICKSTART_CHANNELS] * head_convs
        model.num_classes = num_classes
    if pixel_std is not None:
        model.pixel_std = list(pixel_std)
    return model


def shrink_yacs_to_quickstart(
    cfg,
    num_classes: int = QUICKSTART_NUM_CLASSES,
    head_convs: int = QUICKSTART_HEAD_CONVS,
    pixel_std=IMAGENET_BGR256_STD,
):
    """``shrink_to_quickstart`` for a yacs config (after ``add_semianchor_config``) of a semianchor
    dense detector or a Faster R-CNN: the same modules, and no weights to load."""
    cfg.MODEL.RESNETS.DEPTH = QUICKSTART_DEPTH
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64  # R-18/34 require it
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.FPN.OUT_CHANNELS = QUICKSTART_CHANNELS
    cfg.MODEL.SEMIANCHOR.HEAD.NUM_CONVS = head_convs
    cfg.MODEL.SEMIANCHOR.NUM_CLASSES = num_classes
    if cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN":
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
        cfg.MODEL.ROI_BOX_HEAD.FC_DIM = QUICKSTART_CHANNELS
    if pixel_std is not None:
        cfg.MODEL.PIXEL_STD = list(pixel_std)
    cfg.MODEL.WEIGHTS = ""
    return cfg


def load_base(relative_path: str):
    """The five nodes ``BASE_NODES`` of the LazyConfig at ``relative_path``, a path relative to
    the config file that calls this (as ``LazyConfig.load_rel``), in that order."""
    caller = sys._getframe(1).f_code.co_filename
    if caller == "<string>":
        raise RuntimeError(
            "load_base resolves its path against the calling config file, and was called from "
            "code without one (<string>): use LazyConfig.load with a full path there"
        )
    return LazyConfig.load(os.path.join(os.path.dirname(caller), relative_path), BASE_NODES)


def set_anchor_grid(model, base, num_scales: int, aspect_ratios, strides=(8, 16, 32, 64, 128)):
    """Gives ``model`` (a LazyConfig node with ``anchor_generator`` and ``head.num_anchors``)
    ``num_scales * len(aspect_ratios)`` anchors per location: at each stride s the sizes
    ``base * s * 2 ** (i / num_scales)`` for i < num_scales, each at every aspect ratio."""
    model.anchor_generator.sizes = [
        [base * s * 2 ** (i / num_scales) for i in range(num_scales)] for s in strides
    ]
    model.anchor_generator.aspect_ratios = [list(aspect_ratios)]
    model.head.num_anchors = num_scales * len(aspect_ratios)


def set_padet_paper_loss(model):
    """PADet's loss as the paper writes it (Sec. 3.3): no hard-negative mining on either module
    (every negative the theta rule leaves trains), each module's loss divided by this step's
    positive count."""
    model.loss_mode = "paper"
    model.neg_pos_ratio = 0.0
    model.apm_neg_pos_ratio = 0.0
