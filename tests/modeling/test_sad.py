"""Semi-Anchored Detector: the location labels (Eq. 1, Eq. 4, Proposition 1), the AC targets
(Eq. 2), the smoothed focal loss (Eq. 3), R1/R2 regression targets, top-1 inference and the
detector end to end (empty GT, autocast, non-finite predictions, LazyConfig/yacs, DefaultPredictor).
"""

import math
import os

import numpy as np
import pytest
import torch

from detectron2.config import LazyConfig, instantiate

from semianchor.modeling.assigners import AssignInputs, SADAssigner
from semianchor.modeling.assigners.sad import (
    ac_soft_targets,
    fcos_location_labels,
    location_labels,
)
from semianchor.modeling.box_coder import DeltaBoxCoder
from semianchor.modeling.losses import iou_loss, smoothed_focal_loss
from semianchor.modeling.meta_arch import SemiAnchoredDetector

from .conftest import NUM_CLASSES, REPO, build_lazy, build_yacs, shrink_lazy_model

LAZY = "configs/COCO-Detection/sad_R_50_FPN_1x.py"
YACS = "configs/yacs/SAD_R_50_FPN_1x.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/modeling/conftest.py


# ---------------------------------------------------------------- location labels
def _eq4(labels, iou, A, K, gamma=None):
    """labels (N, L*A) of consecutive locations of A anchors each."""
    R = labels.shape[1]
    loc = torch.arange(R) // A
    return location_labels(labels, iou, loc, R // A, K, A, gamma)


def test_eq4_majority_and_ties_on_hand_cases():
    K, A = 3, 4
    bg = K
    labels = torch.tensor(
        [
            [bg, bg, bg, bg]  # location 0: all background -> background
            + [1, 2, 2, bg]  # location 1: majority class 2
            + [0, 1, bg, bg]  # location 2: tie 0 vs 1 -> class of the highest-IoU positive (1)
            + [2, 0, bg, bg]  # location 3: tie, equal IoUs -> lowest anchor index (class 2)
            + [bg, -1, bg, bg]  # location 4: no positive, one ignored -> ignored
        ]
    )
    iou = torch.tensor(
        [
            [0.1, 0.2, 0.0, 0.3]
            + [0.6, 0.5, 0.7, 0.1]
            + [0.55, 0.8, 0.2, 0.1]
            + [0.6, 0.6, 0, 0]
            + [0.3, 0.45, 0.1, 0]
        ]
    )
    loc_labels, winner = _eq4(labels, iou, A, K)
    assert loc_labels[0].tolist() == [bg, 2, 1, 2, -1]
    assert winner[0].tolist() == [-1, 6, 9, 12, -1]  # anchor of the location's GT


def test_proposition_1_small_gamma_gives_eq4_and_large_gamma_does_not():
    g = torch.Generator().manual_seed(0)
    K, A, L, N = 4, 9, 400, 2
    differs_large = 0
    for trial in range(20):
        # sparse positives: most anchors background, a few of random classes
        labels = torch.full((N, L * A), K)
        pos = torch.rand(N, L * A, generator=g) < 0.1
        labels[pos] = torch.randint(0, K, (int(pos.sum()),), generator=g)
        iou = torch.rand(N, L * A, generator=g)
        eq4, _ = _eq4(labels, iou, A, K)
        small, _ = _eq4(labels, iou, A, K, gamma=1.0 / (A + 1))
        assert torch.equal(small, eq4), trial
        large, _ = _eq4(labels, iou, A, K, gamma=0.2)  # Table 4's 0.2: one positive of 9 loses
        assert ((large < K) <= (eq4 < K)).all()  # never more positives than Eq. 4
        differs_large += int((large != eq4).sum())
    assert differs_large > 0


# ---------------------------------------------------------------- AC targets (Eq. 2)
def test_mu_hat_in_0_1_and_one_for_each_locations_best():
    g = torch.Generator().manual_seed(1)
    A, L = 5, 50
    loc = torch.arange(L * A) // A
    mu = torch.rand(3, L * A, generator=g) * 0.9 + 0.05
    y_hat = torch.rand(3, L * A, generator=g) < 0.4
    mu_hat = ac_soft_targets(mu, y_hat, loc, L, sigma=0.9)
    assert ((mu_hat[y_hat] > 0) & (mu_hat[y_hat] <= 1)).all()
    assert (mu_hat[~y_hat] == 0).all()
    for n in range(3):
        for i in range(L):
            sel = y_hat[n, i * A : (i + 1) * A]
            if sel.any():
                best = mu[n, i * A : (i + 1) * A][sel].argmax()
                assert mu_hat[n, i * A : (i + 1) * A][sel][best] == 1.0
                ratio = mu[n, i * A : (i + 1) * A][sel] / mu[n, i * A : (i + 1) * A][sel].max()
                assert torch.allclose(mu_hat[n, i * A : (i + 1) * A][sel], ratio.pow(0.9))


# ---------------------------------------------------------------- Eq. 3 and the box loss
def test_eq3_hand_values():
    def value(p, mu_hat, positive):
        logit = torch.tensor([math.log(p / (1 - p))], dtype=torch.float64)
        return float(
            smoothed_focal_loss(logit, torch.tensor([mu_hat]), torch.tensor([positive]), 0.25, 2.0)
        )

    assert value(0.6, 0.6, True) == pytest.approx(0.0, abs=1e-7)  # 0 at p = mu_hat
    # at mu_hat 0.6, p 0.999 Eq. 3 gives 0.00002 (the QFL form 0.198)
    assert value(0.999, 0.6, True) == pytest.approx(
        0.25 * 0.399**2 * 0.6 * -math.log(0.999), rel=1e-4
    )
    assert value(0.999, 0.6, True) == pytest.approx(2.4e-5, rel=0.05)
    # positive, p = 0.3, mu_hat 0.8: -0.25 * 0.5^2 * 0.8 * ln(0.3)
    assert value(0.3, 0.8, True) == pytest.approx(-0.25 * 0.25 * 0.8 * math.log(0.3), rel=1e-5)
    # negative: -(1 - alpha) p^2 ln(1 - p), whatever mu_hat
    assert value(0.3, 0.8, False) == pytest.approx(-0.75 * 0.09 * math.log(0.7), rel=1e-5)
    # finite at the extremes of p
    big = torch.tensor([-80.0, 80.0, -1e4, 1e4])
    for positive in (True, False):
        out = smoothed_focal_loss(big, torch.full((4,), 0.7), torch.full((4,), positive))
        assert torch.isfinite(out).all()


def test_log_iou_box_loss():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 5.0]])
    assert float(iou_loss(a, b, "log_iou")) == pytest.approx(-math.log(0.5), rel=1e-5)
    assert float(iou_loss(a, b, "iou")) == pytest.approx(0.5, rel=1e-5)
    far = torch.tensor([[50.0, 50.0, 60.0, 60.0]])
    assert math.isfinite(float(iou_loss(a, far, "log_iou")))


# ---------------------------------------------------------------- the assigner
def _hand_inputs(regression=None):
    """Two locations of A = 2 anchors each (strides irrelevant), one GT of class 1 over
    location 0, and one GT of class 2 overlapping anchor 2 of location 1 only."""
    anchors = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 14, 14], [20, 20, 30, 30], [16, 16, 34, 34]], dtype=torch.float32
    )
    gt = torch.tensor([[[0, 0, 11, 11], [20, 20, 31, 30]]], dtype=torch.float32)
    return AssignInputs(
        anchors=anchors,
        num_anchors_per_level=[4],
        anchor_strides=torch.full((4,), 8.0),
        anchors_per_location=2,
        gt_boxes=gt,
        gt_classes=torch.tensor([[1, 2]]),
        gt_counts=torch.tensor([2]),
        num_classes=3,
        pred_scores=torch.full((1, 4, 3), 0.5),
        pred_regression=torch.zeros(1, 4, 4) if regression is None else regression,
        box_coder=DeltaBoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
    )


def test_r1_and_r2_regression_targets():
    inputs = _hand_inputs()
    r1 = SADAssigner(regression="anchor")(inputs)
    r2 = SADAssigner(regression="location")(inputs)
    # static labels: anchor 0 (IoU 0.83) -> GT 0, anchor 1 (0.62) -> GT 0; anchor 2 (0.91) -> GT 1;
    # anchor 3 (IoU 0.34 with GT 1) background
    assert r1.extras["anchor_labels"][0].tolist() == [1, 1, 2, 3]
    # the static IoUs before regression (the tie-break of Eq. 4) are kept for the log
    iou = [100 / 121, 121 / 196, 100 / 110, 110 / 324]
    torch.testing.assert_close(r1.extras["max_iou"][0], torch.tensor(iou))
    assert r1["locations"].labels[0].tolist() == [1, 2]
    assert r1["locations"].matched_gt[0].tolist() == [0, 1]
    # R1: anchors regress iff positive themselves, to their own GT
    assert r1.matched_gt[0].tolist() == [0, 0, 1, -1]
    # R2: every anchor of a positive location regresses, to the location's GT
    assert r2.matched_gt[0].tolist() == [0, 0, 1, 1]
    assert r2.labels[0].tolist() == [1, 1, 2, 2]


def test_ac_labels_follow_the_iou_after_regression():
    # anchor 3's regression moves it onto GT 1 (IoU after regression 1): y_hat = 1, mu_hat = 1,
    # anchor 2 (IoU 0.91 before and after) then gets (0.909 / 1)^0.9
    reg = torch.zeros(1, 4, 4)
    aw = 18.0
    reg[0, 3] = torch.tensor([(25.5 - 25) / aw, 0.0, math.log(11 / 18), math.log(10 / 18)])
    res = SADAssigner(sigma=0.9)(_hand_inputs(reg))
    ac = res["anchor_cls"]
    assert ac.labels[0].tolist() == [0, 0, 0, 0]
    mu = res.extras["iou_after_regression"][0]
    assert mu[3] == pytest.approx(1.0, abs=1e-5)
    assert ac.soft_targets[0, 3] == pytest.approx(1.0, abs=1e-5)
    assert ac.soft_targets[0, 2] == pytest.approx((float(mu[2]) / float(mu[3])) ** 0.9, rel=1e-5)
    # with zero regression anchor 3 keeps IoU 0.34 < 0.5: y_hat = 0 (trained as a negative)
    zero = SADAssigner()(_hand_inputs())["anchor_cls"]
    assert zero.labels[0].tolist() == [0, 0, 0, 1] and zero.soft_targets[0, 3] == 0
    assert int(zero.positive_mask(3).sum()) == 3  # the AC set is one-class: 1 = background


def test_non_finite_predictions_give_finite_ac_targets():
    reg = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0]).repeat(1, 4, 1)
    res = SADAssigner()(_hand_inputs(reg))
    assert torch.isfinite(res["anchor_cls"].soft_targets).all()
    # a NaN prediction has IoU after regression 0, so its anchor is an AC negative
    assert float(res.extras["iou_after_regression"][0, 0]) == 0.0
    assert int(res["anchor_cls"].labels[0, 0]) == 1


@pytest.mark.parametrize("rule, radius", [("fcos", None), ("fcos_shrink", 0.05)])
def test_the_fcos_location_rules_use_their_size_ranges_and_radius(rule, radius):
    """Table 3's rules: the assigner's locations are ``fcos_location_labels`` with its own size
    ranges (one level here) and, for "fcos_shrink", its centre radius. Both locations are 6 px
    from their GT's far sides and 0.5 px from its centre (x for both, y for location 0)."""
    inputs = _hand_inputs()
    kw = dict(location_rule=rule, fcos_size_ranges=((0.0, 8.0),))
    if radius is not None:
        kw["fcos_center_radius"] = radius  # 0.4 px: both locations are outside
    got = SADAssigner(**kw)(inputs)["locations"]
    labels, gt = fcos_location_labels(inputs, ((0.0, 8.0),), radius)
    assert got.labels.tolist() == labels.tolist() and got.matched_gt.tolist() == gt.tolist()
    assert got.labels.tolist() == ([[1, 2]] if radius is None else [[3, 3]])
    small = SADAssigner(**{**kw, "fcos_size_ranges": ((0.0, 5.5),)})(inputs)["locations"]
    assert small.labels.tolist() == [[3, 3]]


def test_empty_gt_image_all_background():
    inputs = _hand_inputs()
    inputs.gt_counts = torch.tensor([0])
    res = SADAssigner()(inputs)
    assert (res["locations"].labels == 3).all() and (res.labels == 3).all()
    assert (res["anchor_cls"].labels == -1).all()


# ---------------------------------------------------------------- the detector
@pytest.fixture(scope="module")
def tiny_sad():
    return build_lazy(LAZY)


def test_top1_inference_on_a_hand_case(tiny_sad):
    """One level, 2 locations x A = 3 anchors: location 0's best anchor is 2 (AC), location 1
    is below the gate; the detection is anchor 2's decoded box with p_loc * p_ac."""
    model = tiny_sad
    K = NUM_CLASSES
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    preds = {
        "cls": torch.tensor([[logit(0.2), logit(0.9), logit(0.01)], [logit(0.01)] * K]),
        "reg": torch.zeros(6, 4),
        "ac": torch.tensor([[logit(0.3)], [logit(0.1)], [logit(0.8)], [logit(0.9)], [0.0], [0.0]]),
    }
    scores, anchors, classes = model.level_candidates(preds, 3)
    order = scores.argsort(descending=True)
    assert anchors[order].tolist() == [2, 2] and classes[order].tolist() == [1, 0]
    assert scores[order].tolist() == pytest.approx([0.9 * 0.8, 0.2 * 0.8], rel=1e-5)
    model.inference = "topk"
    try:
        _, anchors, classes = model.level_candidates(preds, 3)
        assert sorted(anchors.tolist()) == [0, 0, 2, 2]  # top-2 anchors of location 0
    finally:
        model.inference = "top1"


def test_lazy_and_yacs_builds_agree(tiny_sad):
    yacs, _ = build_yacs(YACS)
    assert isinstance(yacs, SemiAnchoredDetector)
    assert repr(yacs.assigner) == repr(tiny_sad.assigner)
    cells = lambda m: [c.tolist() for c in m.anchor_generator.cell_anchors]  # noqa: E731
    assert np.allclose(cells(yacs), cells(tiny_sad))
    for attr in (
        "focal_loss_gamma",
        "box_loss_type",
        "box_loss_weight",
        "test_nms_thresh",
        "inference",
        "ac_loss",
        "ac_loss_weight",
        "ac_alpha",
        "ac_beta",
        "inference_topk",
        "inference_tau",
        "noac_draw",
    ):
        assert getattr(yacs, attr) == getattr(tiny_sad, attr), attr


def test_every_sad_yacs_key_reaches_the_detector():
    """MODEL.SEMIANCHOR.SAD's loss and inference keys, each set off its default, are the built
    detector's attributes of the same name (lower case)."""
    values = {
        "AC_LOSS": "qfl",
        "AC_LOSS_WEIGHT": 1.5,
        "AC_ALPHA": 0.4,
        "AC_BETA": 1.5,
        "INFERENCE": "pos",
        "INFERENCE_TOPK": 3,
        "INFERENCE_TAU": 0.2,
        "NOAC_DRAW": 4,
    }
    opts = [x for k, v in values.items() for x in (f"MODEL.SEMIANCHOR.SAD.{k}", str(v))]
    model, _ = build_yacs(YACS, opts)
    assert {k: getattr(model, k.lower()) for k in values} == values


@pytest.mark.parametrize(
    "path",
    sorted(p for p in os.listdir(os.path.join(REPO, "projects/SAD/configs")) if p.endswith(".py")),
)
def test_ablation_configs_build(path):
    """Every ablation config of projects/SAD/configs loads and builds (shrunk to R-18)."""
    cfg = LazyConfig.load(os.path.join(REPO, "projects/SAD/configs", path))
    if cfg.model.num_classes is None:  # a COCO-json config: the count comes from the json
        cfg.model.num_classes = 3
    model = instantiate(shrink_lazy_model(cfg.model) if "R_50" in path else cfg.model)
    assert isinstance(model, SemiAnchoredDetector)
    cells = model.anchor_generator.num_cell_anchors
    assert model.head.num_anchors == cells[0] and len(set(cells)) == 1
    if "table1" in path:
        s, a = (int(v) for v in path.split("_")[2].split("x"))
        assert cells[0] == s * a
    if "noac" in path:
        assert "ac" not in model.head_outputs


def test_assigner_arguments_are_checked():
    with pytest.raises(ValueError, match=r"^location_gamma must be None or in \[0, 1\), got 1.5$"):
        SADAssigner(location_gamma=1.5)
    for ranges in (((0.0, 64.0, 1.0),), ((64.0, 0.0),)):
        with pytest.raises(ValueError, match=r"^fcos_size_ranges must be \(lo, hi\) with lo < hi"):
            SADAssigner(location_rule="fcos", fcos_size_ranges=ranges)
    with pytest.raises(ValueError, match=r"^fcos_center_radius must be > 0, got 0.0$"):
        SADAssigner(location_rule="fcos_shrink", fcos_center_radius=0.0)
