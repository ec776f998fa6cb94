"""ATSS detectors end to end: LazyConfig and yacs builds, training steps, inference."""

import math

import pytest
import torch

from detectron2.utils.events import EventStorage

from semianchor.modeling import ATSS, ATSSAssigner, DeltaBoxCoder, LTRBBoxCoder, MaxIoUAssigner

from .conftest import (
    NUM_CLASSES,
    assert_finite_detections,
    make_batch,
    run_with_poisoned_regression,
)

LAZY = {
    "anchor_based": "configs/COCO-Detection/atss_R_50_FPN_1x.py",
    "anchor_free": "configs/COCO-Detection/atss_anchor_free_R_50_FPN_1x.py",
}
YACS = {
    "anchor_based": "configs/yacs/ATSS_R_50_FPN_1x.yaml",
    "anchor_free": "configs/yacs/ATSS_anchor_free_R_50_FPN_1x.yaml",
}


@pytest.mark.parametrize("variant", sorted(LAZY))
def test_lazy_and_yacs_builds_agree(variant, lazy_model, yacs_model):
    lazy = lazy_model(LAZY[variant])
    yacs, _ = yacs_model(YACS[variant])
    assert isinstance(lazy, ATSS) and isinstance(yacs, ATSS)
    assert isinstance(lazy.assigner, ATSSAssigner) and isinstance(yacs.assigner, ATSSAssigner)
    coder = LTRBBoxCoder if variant == "anchor_free" else DeltaBoxCoder
    assert isinstance(lazy.box_coder, coder) and isinstance(yacs.box_coder, coder)
    lazy_sd, yacs_sd = lazy.state_dict(), yacs.state_dict()
    assert sorted(lazy_sd) == sorted(yacs_sd)
    for k in lazy_sd:
        assert lazy_sd[k].shape == yacs_sd[k].shape, k
    # a checkpoint of one loads strictly into the other
    yacs.load_state_dict(lazy_sd, strict=True)


@pytest.mark.parametrize("variant", sorted(LAZY))
def test_training_step_with_empty_gt_image(variant, lazy_model):
    model = lazy_model(LAZY[variant])
    model.train()
    batch = make_batch(3, empty=(1,))
    with EventStorage():
        losses = model(batch)
    assert set(losses) == {"loss_atss_cls", "loss_atss_box", "loss_atss_ctr"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_all_empty_batch_trains(lazy_model):
    model = lazy_model(LAZY["anchor_based"])
    model.train()
    with EventStorage():
        losses = model(make_batch(2, empty=(0, 1)))
    assert losses["loss_atss_cls"] > 0
    assert losses["loss_atss_box"] == 0 and losses["loss_atss_ctr"] == 0
    sum(losses.values()).backward()  # all negatives: still a valid graph


def test_training_step_under_autocast(lazy_model):
    model = lazy_model(LAZY["anchor_based"])
    model.train()
    with EventStorage(), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(make_batch(2))
    for k, v in losses.items():
        assert v.dtype == torch.float32, k
        assert torch.isfinite(v), k


def test_losses_fall_when_overfitting_one_batch(lazy_model):
    model = lazy_model(LAZY["anchor_based"])
    model.train()
    model.loss_normalizer_momentum = 0.0  # normalise by this batch's positives: comparable steps
    batch = make_batch(2, seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    with EventStorage():
        for _ in range(12):
            losses = model(batch)
            total = sum(losses.values())
            opt.zero_grad()
            total.backward()
            opt.step()
            history.append(total.item())
    assert history[-1] < history[0] * 0.9, history


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_non_finite_regression_never_yields_a_non_finite_box(bad, lazy_model):
    """A finite image, NaN/inf injected into the regression after the head, every location past
    the class gate: there are detections and every box is finite (the box filter caught them)."""
    model = lazy_model(LAZY["anchor_based"])
    assert_finite_detections(run_with_poisoned_regression(model, bad))


def test_inference_output_format(lazy_model):
    model = lazy_model(LAZY["anchor_free"])
    model.eval()
    model.test_score_thresh = 0.0  # untrained: accept everything so the path is exercised
    with torch.no_grad():
        out = model(make_batch(2, size=80))
    for r in out:
        inst = r["instances"]
        assert inst.image_size == (80, 80)
        assert len(inst) <= model.max_detections_per_image and len(inst) > 0
        assert inst.pred_classes.max() < NUM_CLASSES
        assert torch.isfinite(inst.pred_boxes.tensor).all()
        assert (inst.scores >= 0).all() and (inst.scores <= 1).all()


def test_assigner_swaps_by_config(lazy_model):
    """RetinaNet-style max-IoU on the ATSS detector: a config change, no code."""
    model = lazy_model(LAZY["anchor_based"])
    model.assigner = MaxIoUAssigner(thresholds=(0.4, 0.5), labels=(0, -1, 1))
    model.train()
    with EventStorage():
        losses = model(make_batch(2))
    assert all(torch.isfinite(v) for v in losses.values())


def test_bad_constructor_arguments_raise(lazy_model):
    model = lazy_model(LAZY["anchor_based"])
    with pytest.raises(ValueError, match="box_loss_type"):
        ATSS(
            backbone=model.backbone,
            head=model.head,
            anchor_generator=model.anchor_generator,
            box_coder=model.box_coder,
            assigner=model.assigner,
            num_classes=NUM_CLASSES,
            box_loss_type="l2",
        )
