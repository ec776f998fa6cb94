"""Every shipped config loads and builds its model (LazyConfig and yacs), with a sane schedule."""

import glob
import os

import pytest

from detectron2.config import instantiate
from detectron2.modeling import build_model

from semianchor import model_zoo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAZY = sorted(
    os.path.relpath(p, os.path.join(REPO, "configs"))
    for d in ("COCO-Detection", "quickstart")
    for p in glob.glob(os.path.join(REPO, "configs", d, "*.py"))
)
YACS = sorted(
    os.path.relpath(p, os.path.join(REPO, "configs"))
    for p in glob.glob(os.path.join(REPO, "configs", "yacs", "*.yaml"))
    if not os.path.basename(p).startswith("Base-")
)


def test_configs_found():
    assert any("atss" in p for p in LAZY) and any("ATSS" in p for p in YACS)


@pytest.mark.parametrize("path", LAZY)
def test_lazy_config_builds(path):
    cfg = model_zoo.get_config(path)
    for key in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{path} lacks {key}"
    if cfg.model.get("num_classes", 0) is None:  # a COCO-json config: the count comes from the json
        cfg.model.num_classes = 3
    model = instantiate(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    if path.startswith("COCO-Detection/padet"):  # PADet's own recipe: 160 epochs at batch 32
        assert cfg.train.max_iter == 586330 and cfg.dataloader.train.total_batch_size == 32
        assert cfg.optimizer.lr == 2e-3 and cfg.optimizer.weight_decay == 5e-4
        if "R101" in path:  # Detectron2's MSRA ResNet-101 (FrozenBN, stride in the 1x1)
            assert cfg.train.init_checkpoint == "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
        else:  # no ImageNet VGG-16 in Detectron2's zoo: a converted one (projects/PADet/README)
            assert cfg.train.init_checkpoint == ""
    elif path.startswith("COCO-Detection"):
        assert cfg.train.max_iter == 90000 and cfg.dataloader.train.total_batch_size == 16
        assert cfg.train.init_checkpoint.startswith("detectron2://ImageNetPretrained/")
    else:
        assert cfg.train.init_checkpoint == ""  # quickstarts train from scratch


@pytest.mark.parametrize("path", YACS)
def test_yacs_config_builds(path):
    cfg = model_zoo.get_config(path)
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    assert type(model).__name__ == cfg.MODEL.META_ARCHITECTURE


def test_unknown_config_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="not a semianchor config"):
        model_zoo.get_config("COCO-Detection/nope.py")
