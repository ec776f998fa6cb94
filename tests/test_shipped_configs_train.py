"""Every shipped small LazyConfig trains under Detectron2's own ``SimpleTrainer`` on
``instantiate(cfg.model)``, with no call of ours in between (no ``set_training_schedule``, no
training tool): whatever a model needs to train must come from its config."""

import glob
import os

import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import SimpleTrainer

from semianchor.data import SHAPES_CLASS_NAMES
from semianchor.data.shapes import coco_json_path, load_shapes

from .conftest import REPO

CONFIGS = sorted(
    glob.glob(os.path.join(REPO, "configs", "quickstart", "*.py"))
    + glob.glob(os.path.join(REPO, "projects", "*", "configs", "*_R18_*.py"))
)


def _tiny_data(cfg):
    """The config's own loader, pointed at the 16-image tiny split (as shapes or as a COCO json),
    batch 2, in-process."""
    dataset = cfg.dataloader.train.dataset
    if "names" in dataset:
        dataset.names = "semianchor_shapes_tiny"
    else:
        load_shapes("semianchor_shapes_tiny")  # generates the images and json on first use
        json_file = coco_json_path("semianchor_shapes_tiny")
        dataset.name = "test_simple_trainer_coco_json"
        dataset.json_file = json_file
        dataset.image_root = os.path.dirname(json_file)
        cfg.model.num_classes = len(SHAPES_CLASS_NAMES)
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.train.num_workers = 0


def test_the_list_holds_every_quickstart_config():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {"dla_R18_shapes.py", "dla_R18_coco_json.py", "atss_R18_shapes.py"} <= names
    assert len(CONFIGS) >= 12


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_simple_trainer_trains_two_iterations(path):
    cfg = LazyConfig.load(path)
    _tiny_data(cfg)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    trainer = SimpleTrainer(model, instantiate(cfg.dataloader.train), optimizer)
    trainer.train(0, 2)
    assert trainer.iter == 2  # iterations 0 and 1 ran
    losses = trainer.storage.latest()
    assert any(k.startswith("loss") for k in losses), sorted(losses)
    assert all(torch.isfinite(torch.tensor(v[0])) for k, v in losses.items() if "loss" in k)
