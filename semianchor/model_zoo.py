"""Access the configs shipped in ``configs/`` by their path, like ``detectron2.model_zoo``.

from semianchor import model_zoo
cfg = model_zoo.get_config("COCO-Detection/atss_R_50_FPN_1x.py")       # LazyConfig
cfg = model_zoo.get_config("yacs/ATSS_R_50_FPN_1x.yaml")                # yacs CfgNode

A config that changes another one starts from ``load_base``:

from semianchor.model_zoo import load_base
model, dataloader, optimizer, lr_multiplier, train = load_base("sad_R_50_FPN_1x.py")
"""

import os
import sys

from detectron2.config import LazyConfig, get_cfg

from .config import add_semianchor_config

__all__ = [
    "get_config_file",
    "get_config",
    "load_base",
    "set_anchor_grid",
    "set_padet_paper_loss",
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
