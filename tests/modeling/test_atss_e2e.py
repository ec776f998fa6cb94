"""ATSS detectors end to end: LazyConfig and yacs builds, training steps, inference."""

import pytest
import torch

from detectron2.utils.events import EventStorage

from semianchor.modeling import ATSS, ATSSAssigner, DeltaBoxCoder, LTRBBoxCoder, MaxIoUAssigner

from .conftest import NUM_CLASSES, detector_parts, make_batch, sgd_loss_history

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


def test_losses_fall_when_overfitting_one_batch(lazy_model):
    model = lazy_model(LAZY["anchor_based"])
    model.loss_normalizer_momentum = 0.0  # normalise by this batch's positives: comparable steps
    history = sgd_loss_history(model, make_batch(2, seed=3), steps=12)
    assert history[-1] < history[0] * 0.9, history


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
        ATSS(num_classes=NUM_CLASSES, box_loss_type="l2", **detector_parts(model))
