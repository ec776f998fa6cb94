"""Predictors: Detectron2's ``DefaultPredictor`` for yacs configs, and its twin for LazyConfigs."""

import os
from typing import Tuple

import torch

import detectron2.data.transforms as T
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, LazyConfig, get_cfg, instantiate
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor

from ..config import add_semianchor_config

__all__ = ["LazyPredictor", "build_predictor"]


class LazyPredictor:
    """``DefaultPredictor`` for a LazyConfig: same call (one BGR HxWx3 uint8 array -> outputs),
    the test mapper's augmentations, weights from ``train.init_checkpoint`` or ``weights``."""

    def __init__(self, cfg, weights: str = "", device: str = ""):
        self.cfg = cfg
        self.model = instantiate(cfg.model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(device).eval()
        DetectionCheckpointer(self.model).load(weights or cfg.train.init_checkpoint)
        mapper = cfg.dataloader.test.mapper
        self.aug = T.AugmentationList([instantiate(a) for a in mapper.get("augmentations", [])])
        self.input_format = mapper.get("image_format", "BGR")

    def __call__(self, original_image):
        with torch.no_grad():
            if self.input_format == "RGB":
                original_image = original_image[:, :, ::-1]
            height, width = original_image.shape[:2]
            aug_input = T.AugInput(original_image)
            self.aug(aug_input)
            image = torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1))
            return self.model(
                [{"image": image.to(self.model.device), "height": height, "width": width}]
            )[0]


def build_predictor(
    config_file: str, weights: str = "", opts=(), device: str = "", score_thresh: float = None
) -> Tuple[object, object]:
    """A predictor and the metadata of its test dataset, from a yacs (.yaml) or LazyConfig (.py).

    ``score_thresh`` (optional) lowers the model's test-time candidate threshold to it, so that a
    demo's confidence threshold is not pre-empted by the model's own (as Detectron2's demo does).
    """
    if not os.path.exists(config_file):
        raise FileNotFoundError(f"config file not found: {config_file}")
    if config_file.endswith(".py"):
        cfg = LazyConfig.load(config_file)
        cfg = LazyConfig.apply_overrides(cfg, list(opts))
        if score_thresh is not None and "test_score_thresh" in cfg.model:
            cfg.model.test_score_thresh = min(cfg.model.test_score_thresh, score_thresh)
        predictor = LazyPredictor(cfg, weights, device)
        names = cfg.dataloader.test.dataset.names
        name = names if isinstance(names, str) else names[0]
    else:
        cfg: CfgNode = add_semianchor_config(get_cfg())
        cfg.merge_from_file(config_file)
        cfg.merge_from_list(list(opts))
        if weights:
            cfg.MODEL.WEIGHTS = weights
        if score_thresh is not None and "SEMIANCHOR" in cfg.MODEL:
            cfg.MODEL.SEMIANCHOR.TEST.SCORE_THRESH = min(
                cfg.MODEL.SEMIANCHOR.TEST.SCORE_THRESH, score_thresh
            )
        cfg.MODEL.DEVICE = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cfg.freeze()
        predictor = DefaultPredictor(cfg)
        name = cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused"
    return predictor, MetadataCatalog.get(name)
