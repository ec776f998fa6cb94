"""Access the configs shipped in ``configs/`` by their path, like ``detectron2.model_zoo``.

from semianchor import model_zoo
cfg = model_zoo.get_config("COCO-Detection/atss_R_50_FPN_1x.py")       # LazyConfig
cfg = model_zoo.get_config("yacs/ATSS_R_50_FPN_1x.yaml")                # yacs CfgNode
"""

import os

from detectron2.config import LazyConfig, get_cfg

from .config import add_semianchor_config

__all__ = ["get_config_file", "get_config"]

_CONFIG_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


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
