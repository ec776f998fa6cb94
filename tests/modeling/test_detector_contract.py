"""The contract every shipped detector keeps, one parametrised test per clause over ``DETECTORS``
(every META_ARCH of semianchor, plus the Noisy-Anchor RPN inside Faster R-CNN). A new method
joins by one row.

Clauses: a training step on a batch with an empty image (the declared loss keys, finite values
and gradients, the method's diagnostics logged) and on an all-empty batch (finite, the box-type
terms exactly 0, the classification term > 0, a valid graph); a step under CPU bf16 autocast
(float32, finite losses); NaN / inf regression never yields a non-finite box; the LazyConfig and
yacs builds have the same state-dict keys and shapes; a checkpoint saved from the LazyConfig model
served by Detectron2's ``DefaultPredictor`` through the yacs config gives the LazyConfig model's
detections.
"""

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence, Tuple

import numpy as np
import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from semianchor.config import add_semianchor_config

from .conftest import (
    CHANNELS,
    NUM_CLASSES,
    REPO,
    assert_finite_detections,
    make_batch,
    run_with_poisoned_regression,
    shrink_lazy_model,
    shrink_yacs,
)


# ---------------------------------------------------------------- tiny builds, per family
def _lazy_fpn(model):
    return shrink_lazy_model(model)


def _lazy_rcnn(model):
    model = shrink_lazy_model(model)
    model.roi_heads.box_predictor.test_score_thresh = 0.0
    return model


def _yacs_rcnn(cfg):
    shrink_yacs(cfg)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    return cfg


PADET_WIDTH = 0.0625  # VGG-16 at 1/16 of its channels


def _lazy_padet(model):
    model.backbone.encoder.width = PADET_WIDTH
    model.backbone.channels = CHANNELS
    model.head.input_shape = [ShapeSpec(channels=CHANNELS)] * len(model.head.input_shape)
    model.num_classes = NUM_CLASSES
    return model


def _yacs_padet(cfg):
    cfg.MODEL.SEMIANCHOR.PADET.ENCODER_WIDTH = PADET_WIDTH
    cfg.MODEL.SEMIANCHOR.PADET.DECODER_CHANNELS = CHANNELS
    cfg.MODEL.SEMIANCHOR.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def _poison_dense(model, bad):
    return run_with_poisoned_regression(model, bad)


def _poison_rcnn(model, bad):
    """The second stage's box deltas poisoned (whole proposals, Detectron2 drops a proposal when
    any class's box is non-finite) and every class logit above the background."""
    model.eval()
    predictor = model.roi_heads.box_predictor
    forward = predictor.forward
    g = torch.Generator().manual_seed(0)

    def poisoned(x):
        scores, deltas = forward(x)
        scores = torch.zeros_like(scores)
        scores[:, :-1] = 5.0
        mask = torch.rand(deltas.shape[0], 1, generator=g) < 0.5
        return scores, torch.where(mask, torch.full_like(deltas, bad), deltas)

    predictor.forward = poisoned
    try:
        with torch.no_grad():
            out = model(make_batch(2, size=64))
    finally:
        del predictor.forward
    return [o["instances"].pred_boxes.tensor for o in out]


@dataclass
class Detector:
    """One row of the contract: how to build the method tiny from its LazyConfig and its yacs
    config, what its training step returns and logs, how to poison its regression."""

    lazy: str
    yacs: str
    shrink_lazy: Callable
    shrink_yacs: Callable
    losses: Sequence[str]
    box_losses: Sequence[str]  # exactly 0 on an all-empty batch
    logged: Sequence[str] = ()
    image_size: int = 64
    poison: Callable = _poison_dense
    test_score_thresh: Tuple[str, str] = ("test_score_thresh", "MODEL.SEMIANCHOR.TEST.SCORE_THRESH")
    extra: dict = field(default_factory=dict)


DETECTORS = {
    "atss": Detector(
        "configs/COCO-Detection/atss_R_50_FPN_1x.py",
        "configs/yacs/ATSS_R_50_FPN_1x.yaml",
        _lazy_fpn,
        shrink_yacs,
        ("loss_atss_cls", "loss_atss_box", "loss_atss_ctr"),
        ("loss_atss_box", "loss_atss_ctr"),
        ("num_pos_anchors", "atss/loss_normalizer"),
    ),
    "atss_anchor_free": Detector(
        "configs/COCO-Detection/atss_anchor_free_R_50_FPN_1x.py",
        "configs/yacs/ATSS_anchor_free_R_50_FPN_1x.yaml",
        _lazy_fpn,
        shrink_yacs,
        ("loss_atss_cls", "loss_atss_box", "loss_atss_ctr"),
        ("loss_atss_box", "loss_atss_ctr"),
        ("num_pos_anchors",),
    ),
    "dla": Detector(
        "configs/COCO-Detection/dla_R_50_FPN_1x.py",
        "configs/yacs/DLA_R_50_FPN_1x.yaml",
        _lazy_fpn,
        shrink_yacs,
        ("loss_dla_cls", "loss_dla_box", "loss_dla_metric"),
        ("loss_dla_box",),
        ("dla_alpha", "dla/pos_metric_mean", "dla/loss_normalizer_weights"),
    ),
    "noisy_anchor_retinanet": Detector(
        "configs/COCO-Detection/noisy_anchor_retinanet_R_50_FPN_1x.py",
        "configs/yacs/NoisyAnchor_RetinaNet_R_50_FPN_1x.yaml",
        _lazy_fpn,
        shrink_yacs,
        ("loss_noisy_cls", "loss_noisy_box"),
        ("loss_noisy_box",),
        ("noisy/mean_cleanliness", "noisy/max_weight"),
    ),
    "noisy_anchor_rpn": Detector(
        "configs/COCO-Detection/noisy_anchor_faster_rcnn_R_50_FPN_1x.py",
        "configs/yacs/NoisyAnchor_FasterRCNN_R_50_FPN_1x.yaml",
        _lazy_rcnn,
        _yacs_rcnn,
        ("loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"),
        ("loss_rpn_loc", "loss_box_reg"),
        ("rpn/num_pos_anchors", "rpn/mean_cleanliness"),
        poison=_poison_rcnn,
        test_score_thresh=None,  # set by the shrinks (ROI_HEADS.SCORE_THRESH_TEST)
    ),
    "sad": Detector(
        "configs/COCO-Detection/sad_R_50_FPN_1x.py",
        "configs/yacs/SAD_R_50_FPN_1x.yaml",
        _lazy_fpn,
        shrink_yacs,
        ("loss_sad_cls", "loss_sad_box", "loss_sad_ac"),
        ("loss_sad_box", "loss_sad_ac"),
        ("sad/pos_per_gt_anchors", "sad/pos_per_gt_locations", "sad/neg_per_pos_locations"),
    ),
    "padet": Detector(
        "configs/COCO-Detection/padet_VGG16_384.py",
        "configs/yacs/PADet_VGG16_384.yaml",
        _lazy_padet,
        _yacs_padet,
        ("loss_padet_cls", "loss_padet_box", "loss_padet_apm_cls", "loss_padet_apm_box"),
        ("loss_padet_box", "loss_padet_apm_box"),
        ("padet/num_pos_initial", "padet/num_pos_promoted", "padet/neg_per_pos_promoted"),
        image_size=96,
    ),
}


def test_every_registered_meta_arch_has_a_row():
    """semianchor's META_ARCHs (and its proposal generator) are all in the table."""
    from detectron2.modeling import META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY

    import semianchor.modeling as modeling

    ours = {
        name
        for name, obj in META_ARCH_REGISTRY
        if getattr(obj, "__module__", "").startswith(modeling.__name__)
    }
    covered = set()
    for row in DETECTORS.values():
        model = lazy_build(row)
        covered.add(type(model).__name__)
        if hasattr(model, "proposal_generator"):
            covered.add(type(model.proposal_generator).__name__)
    assert ours <= covered, ours - covered
    rpns = {
        name
        for name, obj in PROPOSAL_GENERATOR_REGISTRY
        if getattr(obj, "__module__", "").startswith(modeling.__name__)
    }
    assert rpns <= covered, rpns - covered


def lazy_build(row: Detector):
    cfg = LazyConfig.load(os.path.join(REPO, row.lazy))
    torch.manual_seed(0)
    return instantiate(row.shrink_lazy(cfg.model))


def yacs_cfg(row: Detector):
    cfg = add_semianchor_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, row.yacs))
    return row.shrink_yacs(cfg)


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def detector(request):
    """(row, tiny LazyConfig model); the model is shared by the clauses of one row."""
    row = DETECTORS[request.param]
    return row, lazy_build(row)


def _grads_finite(model):
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads)


def test_training_step_on_a_batch_with_an_empty_image(detector):
    row, model = detector
    model.train()
    model.zero_grad()
    with EventStorage() as storage:
        losses = model(make_batch(3, size=row.image_size, empty=(1,)))
        logged = storage.latest()
    assert set(row.losses) <= set(losses) and set(losses) - set(row.losses) <= {
        "loss_cls",
        "loss_box_reg",
    }
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    _grads_finite(model)
    missing = [k for k in row.logged if k not in logged]
    assert not missing, (missing, sorted(logged))


def test_training_step_on_an_all_empty_batch(detector):
    row, model = detector
    model.train()
    model.zero_grad()
    with EventStorage():
        losses = model(make_batch(2, size=row.image_size, empty=(0, 1)))
    for k in row.box_losses:
        assert losses[k] == 0, (k, losses)
    cls = [k for k in row.losses if k not in row.box_losses]
    assert all(losses[k] > 0 and torch.isfinite(losses[k]) for k in cls), losses
    sum(losses.values()).backward()
    _grads_finite(model)


def test_training_step_under_autocast(detector):
    row, model = detector
    model.train()
    with EventStorage(), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(make_batch(2, size=row.image_size))
    for k in row.losses:
        assert losses[k].dtype == torch.float32 and torch.isfinite(losses[k]), (k, losses[k])


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_non_finite_regression_never_yields_a_non_finite_box(detector, bad):
    """A finite image, NaN / inf injected into the regression after the head and every score
    forced past the gate: there are detections, and every box is finite."""
    row, model = detector
    assert_finite_detections(row.poison(model, bad))


def test_lazy_and_yacs_builds_have_the_same_state_dict(detector):
    row, model = detector
    torch.manual_seed(0)
    yacs = build_model(yacs_cfg(row))
    assert type(yacs) is type(model)
    sa, sb = model.state_dict(), yacs.state_dict()
    assert sorted(sa) == sorted(sb)
    assert all(sa[k].shape == sb[k].shape for k in sa), [
        k for k in sa if sa[k].shape != sb[k].shape
    ]


def test_default_predictor_serves_a_saved_checkpoint(detector, tmp_path):
    """Save the LazyConfig model, serve it with DefaultPredictor through the yacs config (no
    resize: MIN_SIZE_TEST 0), compare with the LazyConfig model's own detections."""
    from detectron2.engine import DefaultPredictor

    row, model = detector
    if row.test_score_thresh is not None:
        setattr(model, row.test_score_thresh[0], 0.0)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model_final")
    cfg = yacs_cfg(row)
    cfg.MODEL.WEIGHTS = str(tmp_path / "model_final.pth")
    cfg.INPUT.MIN_SIZE_TEST = 0
    if row.test_score_thresh is not None:
        cfg.merge_from_list([row.test_score_thresh[1], 0.0])
    predictor = DefaultPredictor(cfg)
    size = row.image_size
    image = np.random.RandomState(0).randint(0, 255, (size, size, 3)).astype(np.uint8)
    served = predictor(image)["instances"]
    model.eval()
    with torch.no_grad():
        tensor = torch.as_tensor(image.transpose(2, 0, 1).astype("float32"))
        direct = model([{"image": tensor, "height": size, "width": size}])[0]["instances"]
    assert len(served) == len(direct) > 0
    torch.testing.assert_close(
        served.pred_boxes.tensor, direct.pred_boxes.tensor, atol=1e-3, rtol=0
    )
    torch.testing.assert_close(served.scores, direct.scores, atol=1e-5, rtol=0)
    assert torch.equal(served.pred_classes, direct.pred_classes)
