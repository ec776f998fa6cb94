"""Tiny builders shared by the modeling tests: real configs, shrunk to R-18 / 64 channels."""

import os

import pytest
import torch

from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from semianchor.config import add_semianchor_config
from semianchor.model_zoo import (
    QUICKSTART_CHANNELS,
    shrink_to_quickstart,
    shrink_yacs_to_quickstart,
)
from semianchor.modeling.assigners import AssignInputs
from semianchor.modeling.box_coder import DeltaBoxCoder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_CLASSES = 3
CHANNELS = QUICKSTART_CHANNELS  # GroupNorm(32, C) needs >= 2 channels per group on 1x1 maps


def shrink_lazy_model(model):
    """The quickstart model (``shrink_to_quickstart``) at test size: a 2-conv head, 3 classes, the
    config's pixel std; a Faster R-CNN gets the 64-channel RPN and box heads."""
    return shrink_to_quickstart(model, num_classes=NUM_CLASSES, head_convs=2, pixel_std=None)


def shrink_yacs(cfg):
    shrink_yacs_to_quickstart(cfg, num_classes=NUM_CLASSES, head_convs=2, pixel_std=None)
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def build_lazy(rel_path, shrink=shrink_lazy_model):
    """The LazyConfig at ``rel_path`` (from the repository root), shrunk, built with seed 0."""
    cfg = LazyConfig.load(os.path.join(REPO, rel_path))
    torch.manual_seed(0)
    return instantiate(shrink(cfg.model))


def build_yacs(rel_path, opts=()):
    """The yacs config at ``rel_path``, shrunk, with ``opts`` (a ``merge_from_list`` list) merged
    last, built with seed 0: (model, cfg)."""
    from detectron2.modeling import build_model

    cfg = add_semianchor_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, rel_path))
    shrink_yacs(cfg)
    cfg.merge_from_list(list(opts))
    torch.manual_seed(0)
    return build_model(cfg), cfg


@pytest.fixture
def lazy_model():
    return build_lazy


@pytest.fixture
def yacs_model():
    return build_yacs


def one_level_inputs(anchors, gt_boxes, gt_classes, gt_counts, num_classes, **fields):
    """AssignInputs of a hand case on one feature level: stride 8, one anchor per location, delta
    coder with unit weights; ``fields`` fills the rest (predictions, extras)."""
    R = anchors.shape[0]
    return AssignInputs(
        anchors=anchors,
        num_anchors_per_level=[R],
        anchor_strides=torch.full((R,), 8.0),
        anchors_per_location=1,
        gt_boxes=gt_boxes,
        gt_classes=gt_classes,
        gt_counts=gt_counts,
        num_classes=num_classes,
        box_coder=DeltaBoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
        **fields,
    )


def make_batch(num_images=2, size=96, empty=(), seed=0):
    """Random images with random boxes; images whose index is in ``empty`` have no GT."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for i in range(num_images):
        image = torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8).float()
        m = 0 if i in empty else int(torch.randint(1, 6, (1,), generator=g))
        xy = torch.rand(m, 2, generator=g) * size * 0.6
        wh = torch.rand(m, 2, generator=g) * size * 0.4 + 4
        inst = Instances(
            (size, size),
            gt_boxes=Boxes(torch.cat([xy, xy + wh], 1)),
            gt_classes=torch.randint(0, NUM_CLASSES, (m,), generator=g),
        )
        batch.append({"image": image, "instances": inst, "height": size, "width": size})
    return batch


def sgd_loss_history(model, batch, steps, lr=0.01):
    """Train ``model`` on one ``batch`` for ``steps`` SGD steps (momentum 0.9); the total loss
    before each step."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    history = []
    with EventStorage():
        for _ in range(steps):
            total = sum(model(batch).values())
            opt.zero_grad()
            total.backward()
            opt.step()
            history.append(total.item())
    return history


def detector_parts(model):
    """A built detector's components, as constructor keywords for building another one."""
    names = ("backbone", "head", "anchor_generator", "box_coder", "assigner")
    return {name: getattr(model, name) for name in names}


def run_with_poisoned_regression(model, bad, num_images=2, size=64):
    """Inference on finite images after replacing about half of the head's regression outputs
    with ``bad`` (inf or NaN) and forcing every class logit high. The class gate then passes every
    location, so a non-finite box reaches the box filter instead of being dropped by the score
    threshold (a NaN *image* never tests the filter: its NaN logits fail the gate first).
    Returns the per-image ``pred_boxes`` tensors."""
    model.eval()
    forward = model.head.forward
    g = torch.Generator().manual_seed(0)

    def poisoned(features):
        out = dict(forward(features))
        out["cls"] = [torch.full_like(x, 5.0) for x in out["cls"]]
        out["reg"] = [
            torch.where(torch.rand(x.shape, generator=g) < 0.5, torch.full_like(x, bad), x)
            for x in out["reg"]
        ]
        return out

    model.head.forward = poisoned
    try:
        with torch.no_grad():
            out = model(make_batch(num_images, size=size))
    finally:
        del model.head.forward
    return [o["instances"].pred_boxes.tensor for o in out]


def assert_finite_detections(boxes):
    """There are detections, and every one of them is finite."""
    assert sum(len(b) for b in boxes) > 0, "no detections: the test would prove nothing"
    for b in boxes:
        assert torch.isfinite(b).all(), b[~torch.isfinite(b).all(dim=1)]


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (small tensors: a second thread costs more than it
    saves, and the suite runs beside other jobs on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
