"""Predictors: Detectron2's ``DefaultPredictor`` for yacs configs, and its twin for LazyConfigs."""

import logging
import os
from typing import Tuple

import torch
import yaml

import detectron2.data.transforms as T
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, LazyConfig, get_cfg, instantiate
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.engine import DefaultPredictor

from ..config import add_semianchor_config
from .classes import dataset_class_names, resolve_num_classes

__all__ = [
    "LazyPredictor",
    "build_predictor",
    "is_lazy_config",
    "lazy_test_metadata",
    "load_trained_weights",
]

logger = logging.getLogger(__name__)


class _KeysOnlyLoader(yaml.SafeLoader):
    """Safe yaml loading that reads any tag (``!!python/tuple`` in saved configs) as None: only the
    top-level keys are looked at, nothing is constructed."""


_KeysOnlyLoader.add_multi_constructor("", lambda loader, suffix, node: None)


def is_lazy_config(config_file: str) -> bool:
    """A LazyConfig: a ``.py`` file, or a ``.yaml`` one written by ``LazyConfig.save`` (the
    ``config.yaml`` of a ``tools/lazyconfig_train_net.py`` run: top-level ``model`` and
    ``dataloader``), as opposed to a yacs file (upper-case keys such as ``MODEL``)."""
    if config_file.endswith(".py"):
        return True
    with open(config_file) as f:
        try:
            content = yaml.load(f, Loader=_KeysOnlyLoader)
        except yaml.YAMLError:
            return False  # not yaml at all: let yacs report on it
    return isinstance(content, dict) and "model" in content and "dataloader" in content


def _dataset_metadata(dataset) -> Metadata:
    """Metadata (class names) of a dataloader's ``dataset`` node: a registered dataset (``names``:
    embedded shapes, COCO 2017, ...) or a COCO json (``json_file``: names read from the json)."""
    names = dataset.get("names", None)
    if names is not None:
        return MetadataCatalog.get(names if isinstance(names, str) else names[0])
    if dataset.get("json_file", ""):
        return Metadata(
            name=dataset.get("name", "coco_json"), thing_classes=dataset_class_names(dataset)
        )
    return None


def lazy_test_metadata(cfg) -> Metadata:
    """The class names a LazyConfig's model predicts: its test dataset's, else its training
    dataset's (a model trained on a COCO json whose val json was not given)."""
    for split in ("test", "train"):
        node = cfg.dataloader.get(split, None)
        dataset = node.get("dataset", None) if node is not None else None
        meta = _dataset_metadata(dataset) if dataset is not None else None
        if meta is not None:
            return meta
    logger.warning("The config names no dataset: detections are drawn with class indices")
    return Metadata(name="__unused")


class _RecordingCheckpointer(DetectionCheckpointer):
    """Keeps the incompatible keys that ``load`` only logs."""

    incompatible = None

    def _log_incompatible_keys(self, incompatible) -> None:
        self.incompatible = incompatible
        super()._log_incompatible_keys(incompatible)


def load_trained_weights(model, weights: str) -> None:
    """Load a trained detector's checkpoint into ``model``, strictly enough for serving.

    Raises:
        ValueError: ``weights`` is empty (serving an untrained model draws random boxes), or the
            checkpoint lacks some of the model's parameters (e.g. an ImageNet backbone, or another
            model's checkpoint, without this detector's head).
        FileNotFoundError: the checkpoint does not exist.
    """
    if not weights:
        raise ValueError(
            "No weights to serve: pass --weights path/to/model_final.pth (or set the config's "
            "train.init_checkpoint / MODEL.WEIGHTS); an untrained model would draw random boxes"
        )
    checkpointer = _RecordingCheckpointer(model)
    if not os.path.isfile(checkpointer.path_manager.get_local_path(weights)):
        raise FileNotFoundError(f"checkpoint not found: {weights}")
    checkpointer.load(weights)
    incompatible = checkpointer.incompatible
    missing = sorted(
        set(incompatible.missing_keys) | set(k for k, *_ in incompatible.incorrect_shapes)
    )
    if missing:
        heads = [k for k in missing if not k.startswith("backbone.")]
        raise ValueError(
            f"Checkpoint {weights} is not a trained {type(model).__name__}: it lacks (or has other "
            f"shapes for) {len(missing)} of the model's parameters, {len(heads)} outside the "
            f"backbone, e.g. {(heads or missing)[:5]}. Serve the model_final.pth of a training run "
            "of this config (same num_classes)."
        )


class LazyPredictor:
    """``DefaultPredictor`` for a LazyConfig: same call (one BGR HxWx3 uint8 array -> outputs),
    the test mapper's augmentations, weights from ``train.init_checkpoint`` or ``weights``."""

    def __init__(self, cfg, weights: str = "", device: str = ""):
        self.cfg = cfg
        self.model = instantiate(cfg.model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(device).eval()
        load_trained_weights(self.model, weights or cfg.train.get("init_checkpoint", ""))
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
    """A predictor and the metadata of its test dataset, from a yacs (.yaml) or LazyConfig (.py,
    or the ``config.yaml`` a LazyConfig training run saved).

    Weights: ``weights``, else the config's; an untrained model or a checkpoint without the
    detector's head is an error (:func:`load_trained_weights`).
    ``score_thresh`` (optional) lowers the model's test-time candidate threshold to it, so that a
    demo's confidence threshold is not pre-empted by the model's own (as Detectron2's demo does).
    """
    if not os.path.exists(config_file):
        raise FileNotFoundError(f"config file not found: {config_file}")
    if is_lazy_config(config_file):
        cfg = LazyConfig.load(config_file)
        cfg = LazyConfig.apply_overrides(cfg, list(opts))
        resolve_num_classes(cfg)
        if score_thresh is not None and "test_score_thresh" in cfg.model:
            cfg.model.test_score_thresh = min(cfg.model.test_score_thresh, score_thresh)
        predictor = LazyPredictor(cfg, weights, device)
        return predictor, lazy_test_metadata(cfg)
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
        if not cfg.MODEL.WEIGHTS:
            load_trained_weights(None, "")  # raises: nothing to serve
        predictor = DefaultPredictor(cfg)
        load_trained_weights(predictor.model, cfg.MODEL.WEIGHTS)  # DefaultPredictor only warns
        name = cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused"
    return predictor, MetadataCatalog.get(name)
