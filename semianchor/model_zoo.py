"""Access the configs shipped in ``configs/`` by their path, like ``detectron2.model_zoo``.

from semianchor import model_zoo
cfg = model_zoo.get_config("COCO-Detection/atss_R_50_FPN_1x.py")       # LazyConfig
cfg = model_zoo.get_config("yacs/ATSS_R_50_FPN_1x.yaml")                # yacs CfgNode
"""

import os

from detectron2.config import LazyConfig, get_cfg

from .config import add_semianchor_config

__all__ = ["get_config_file", "get_config"]


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
