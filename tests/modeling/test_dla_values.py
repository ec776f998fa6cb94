"""DLA values on hand cases: Eq. 2's alpha (its defaults, its checks, its epochs from a registered
dataset), the yacs keys, the alpha handed to the assigner, the metric loss (Eq. 7) on a hand-made
assignment, every logged assignment statistic on hand-set regression outputs, and the
assigner's edges (arguments, input checks, out-of-range scores, per-image anchors, one or no
candidate, empty levels)."""

import math
import re

import pytest
import torch
from torchvision.ops import box_iou

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.utils.events import EventStorage

from semianchor.config import add_semianchor_config
from semianchor.modeling.assigners import AssignInputs, AssignResult, DLAAssigner
from semianchor.modeling.meta_arch import DLA
from semianchor.modeling.meta_arch.base import AssignmentDetector
from semianchor.modeling.meta_arch.dla import dla_alpha

from . import golden_case as golden
from .test_assigners import K, make_inputs
from .test_dla import hand_case, with_predictions
from .test_golden_atss_dla import dla


def schedule_only(**fields):
    """A DLA holding the alpha schedule's state only (no network)."""
    model = object.__new__(DLA)
    model.fixed_alpha, model.schedule_from_datasets, model.alpha0 = None, None, 0.9
    model.iters_per_epoch, model.max_iter = None, None
    for k, v in fields.items():
        setattr(model, k, v)
    return model


# ---------------------------------------------------------------- Eq. 2
def test_alpha_default_asymptote_and_short_schedules():
    # T = 0.25 epochs (T < 1 is a valid length), t = 0.25: 0.9 + 0.1 exp(-0.25 / 0.5)
    assert dla_alpha(0.25, 0.25) == pytest.approx(0.9 + 0.1 * math.exp(-0.5), abs=1e-12)
    with pytest.raises(ValueError, match=r"^total_epochs must be > 0, got 0$"):
        dla_alpha(1, 0)
    with pytest.raises(ValueError, match=r"^epoch must be >= 0, got -1$"):
        dla_alpha(-1, 12)


def test_set_training_schedule_accepts_short_epochs_and_one_iteration():
    model = schedule_only()
    # half an iteration per epoch (batch larger than twice the data) and a single iteration
    model.set_training_schedule(iters_per_epoch=0.5, max_iter=1)
    assert (model.iters_per_epoch, model.max_iter) == (0.5, 1)
    # iteration 1: t = 2, T = 2 epochs
    assert model.alpha_at(1) == pytest.approx(0.9 + 0.1 * math.exp(-2 / math.sqrt(2)))
    with pytest.raises(ValueError, match=r"^iters_per_epoch must be a finite number > 0, got 0$"):
        model.set_training_schedule(iters_per_epoch=0, max_iter=10)


def test_alpha_without_a_schedule_says_how_to_give_one():
    message = (
        "DLA's alpha schedule (Eq. 2) needs the training length: call "
        "model.set_training_schedule(iters_per_epoch=len(train dataset) / total batch size, "
        "max_iter=...) before training (tools/lazyconfig_train_net.py does), set "
        "model.iters_per_epoch and model.max_iter in the config, or set fixed_alpha"
    )
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        schedule_only().alpha_at(0)


TINY = "semianchor_test_dla_values_tiny"


def register_tiny_dataset():
    """5 images, the last without annotations."""
    if TINY not in DatasetCatalog.list():
        box = dict(bbox=[0, 0, 4, 4], bbox_mode=0, category_id=0)
        images = [dict(file_name=f"{i}.jpg", image_id=i, height=8, width=8) for i in range(5)]
        for i, d in enumerate(images):
            d["annotations"] = [dict(box)] if i < 4 else []
        DatasetCatalog.register(TINY, lambda: [dict(d) for d in images])


@pytest.mark.parametrize("filter_empty, ipe", [(True, 4 / 2), (False, 5 / 2)])
def test_alpha_epochs_from_the_training_set(filter_empty, ipe):
    """The yacs path: iters per epoch = training images (4 with annotations, 5 in all) / batch 2,
    counted on the first call; T = max_iter / that."""
    register_tiny_dataset()
    datasets = dict(names=[TINY], filter_empty=filter_empty, total_batch_size=2, max_iter=8)
    model = schedule_only(schedule_from_datasets=datasets)
    expected = dla_alpha(3 / ipe, 8 / ipe)
    assert model.alpha_at(3) == pytest.approx(expected, abs=1e-12)
    assert (model.iters_per_epoch, model.max_iter) == (ipe, 8)


# ---------------------------------------------------------------- yacs keys
def yacs_cfg(**dla_keys):
    cfg = add_semianchor_config(get_cfg())
    cfg.DATASETS.TRAIN = ("a_train", "b_train")
    cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.SOLVER.MAX_ITER = 500
    for k, v in dla_keys.items():
        setattr(cfg.MODEL.SEMIANCHOR.DLA, k, v)
    return cfg


SHARED = dict(alpha0=0.8, metric_loss_weight=1.5, metric_loss_beta=1.5, score_mode="cls_metric")
SHARED_KEYS = dict(
    ALPHA0=0.8, METRIC_LOSS_WEIGHT=1.5, METRIC_LOSS_BETA=1.5, SCORE_MODE="cls_metric"
)


@pytest.mark.parametrize(
    "keys, expected, max_iter",
    [
        # the defaults: schedule from the data, SOLVER.MAX_ITER
        (dict(), dict(fixed_alpha=None, iters_per_epoch=None, max_iter=None), 500),
        # ITERS_PER_EPOCH and MAX_ITER given; FIXED_ALPHA 0 is an alpha (semantics only)
        (
            dict(ITERS_PER_EPOCH=25.0, MAX_ITER=300, FIXED_ALPHA=0.0),
            dict(fixed_alpha=0.0, iters_per_epoch=25.0, max_iter=300),
            300,
        ),
        (dict(FIXED_ALPHA=0.5), dict(fixed_alpha=0.5, iters_per_epoch=None, max_iter=None), 500),
    ],
)
def test_from_config_reads_every_dla_key(monkeypatch, keys, expected, max_iter):
    monkeypatch.setattr(AssignmentDetector, "from_config", classmethod(lambda cls, cfg: {}))
    got = DLA.from_config(yacs_cfg(**SHARED_KEYS, **keys))
    datasets = dict(
        names=["a_train", "b_train"], filter_empty=False, total_batch_size=4, max_iter=max_iter
    )
    assert got == dict(**SHARED, **expected, schedule_from_datasets=datasets)


# ---------------------------------------------------------------- the alpha the assigner sees
def test_fixed_alpha_needs_no_event_storage_and_the_schedule_does():
    assert schedule_only(fixed_alpha=0.7).assign_inputs_extras({}) == {"alpha": 0.7}
    message = "DLA reads the training iteration from Detectron2's EventStorage: train inside one"
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        schedule_only(iters_per_epoch=10.0, max_iter=100).assign_inputs_extras({})


def test_logged_alpha_is_exact_not_smoothed():
    model = schedule_only(iters_per_epoch=10.0, max_iter=90)
    with EventStorage(30) as storage:
        assert model.assign_inputs_extras({}) == {"alpha": dla_alpha(3.0, 9.0)}
        assert storage.latest()["dla_alpha"][0] == dla_alpha(3.0, 9.0)  # 0.9 + 0.1 / e
        assert storage.smoothing_hints()["dla_alpha"] is False


# ---------------------------------------------------------------- Eq. 7 on a hand assignment
def hand_result(labels, matched_gt, metric, weights):
    extras = {} if metric is None else {"metric": torch.tensor([metric])}
    return AssignResult(
        matched_gt=torch.tensor([matched_gt]),
        labels=torch.tensor([labels]),
        weights=None if weights is None else torch.tensor([weights]),
        extras=extras,
    )


def test_metric_loss_is_qfl_over_non_ignored_anchors_over_positives():
    """Anchors: 0 positive (m = 0.6), 1 ignored (label -1: no loss whatever its logit), 2 and 3
    negatives (target 0). beta = 1, c = 0.5, momentum 0: sum_j BCE(c_j, t_j) |t_j - c_j| * 0.5 / 1.
    """
    model = dla("ltrb", fixed_alpha=1.0, loss_normalizer_momentum=0.0)
    model.metric_loss_beta, model.metric_loss_weight = 1.0, 0.5
    logits = [0.3, 4.0, -1.0, 0.2]
    result = hand_result([1, -1, 2, 2], [0, -1, -1, -1], [0.6, 0.0, 0.0, 0.0], [0.6, 0, 0, 0])
    got = model.auxiliary_losses(None, {"metric": torch.tensor([logits])[..., None]}, result)
    expected = 0.0
    for j in (0, 2, 3):
        t, x = (0.6 if j == 0 else 0.0), logits[j]
        c = golden.sigmoid(x)
        expected += (t * golden.softplus(-x) + (1 - t) * golden.softplus(x)) * abs(t - c)
    assert set(got) == {"loss_dla_metric"}
    assert float(got["loss_dla_metric"]) == pytest.approx(0.5 * expected / 1.0, rel=1e-6)


@pytest.mark.parametrize("metric, weights", [(None, [1.0]), ([1.0], None)])
def test_metric_loss_needs_the_metric_and_the_weights(metric, weights):
    model = dla("ltrb", fixed_alpha=1.0)
    result = hand_result([0], [0], metric, weights)
    message = (
        "DLA's losses need the metric m and the weights m^gamma of a DLAAssigner; "
        "DLAAssigner gives neither"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        model.auxiliary_losses(None, {"metric": torch.zeros(1, 1, 1)}, result)


# ---------------------------------------------------------------- logged statistics
# Two levels: the golden case's four 16 px anchors (stride 16, centres (8, 8), (24, 8), (8, 24),
# (24, 24)) and one 32 px anchor of stride 32 (centre (16, 16)). GT0 [2, 2, 18, 14] class 1,
# GT1 [17, 15, 31, 31] class 0.
ANCHORS = golden.ANCHORS_16_32[0::2] + [[0, 0, 32, 32]]
GTS = [[2.0, 2.0, 18.0, 14.0], [17.0, 15.0, 31.0, 31.0]]
# ltrb distances in stride units. Anchor 0: an ordinary box [1.6, 3.2, 17.6, 15.2]; anchor 1:
# height 0 ([20, 8, 28.8, 8]); anchor 2: width 0 ([8, 4.8, 8, 28.8]); anchor 3: 0.32 x 0.32
# (area 0.1024 > 0, every distance in (0, 1)); anchor 4: all four at 0 (the point (16, 16)).
REG = [
    [0.4, 0.3, 0.6, 0.45],
    [0.25, 0.0, 0.3, 0.0],
    [0.0, 1.2, 0.0, 0.3],
    [0.01, 0.01, 0.01, 0.01],
    [0.0, 0.0, 0.0, 0.0],
]
PRED = [
    [1.6, 3.2, 17.6, 15.2],
    [20.0, 8.0, 28.8, 8.0],
    [8.0, 4.8, 8.0, 28.8],
    [23.84, 23.84, 24.16, 24.16],
    [16.0, 16.0, 16.0, 16.0],
]


def logging_case(positives, per_image_anchors=False):
    """``positives`` {anchor: (gt, metric)}; class probability 0.1 everywhere but 0.7 + 0.05 j
    for anchor j's GT class."""
    anchors = torch.tensor(ANCHORS, dtype=torch.float32)
    scores = torch.full((1, 5, 2), 0.1)
    for j, (g, _) in positives.items():
        scores[0, j, 1 - g] = 0.7 + 0.05 * j
    inputs = AssignInputs(
        anchors=anchors[None] if per_image_anchors else anchors,
        num_anchors_per_level=[4, 1],
        anchor_strides=torch.tensor([16.0] * 4 + [32.0]),
        anchors_per_location=1,
        gt_boxes=torch.tensor([GTS]),
        gt_classes=torch.tensor([[1, 0]]),
        gt_counts=torch.tensor([2]),
        num_classes=2,
        pred_scores=scores,
        pred_regression=torch.tensor([REG]),
    )
    matched, labels, metric = [-1] * 5, [2] * 5, [0.0] * 5
    for j, (g, m) in positives.items():
        matched[j], labels[j], metric[j] = g, 1 - g, m
    result = hand_result(labels, matched, metric, [m * m for m in metric])
    return inputs, result


def logged(positives, per_image_anchors=False):
    model = dla("ltrb", fixed_alpha=1.0)
    with EventStorage() as storage:
        model.log_assignment(*logging_case(positives, per_image_anchors))
    return {k: v for k, (v, _) in storage.latest().items()}


def test_the_logging_case_boxes_are_what_the_comment_says():
    inputs, _ = logging_case({})
    boxes = dla("ltrb").box_coder.decode(
        inputs.anchors[None], inputs.pred_regression, inputs.anchor_strides
    )[0]
    torch.testing.assert_close(boxes, torch.tensor(PRED), atol=1e-5, rtol=0)


def mean_iou(boxes, gts):
    return sum(
        float(box_iou(torch.tensor([b]), torch.tensor([g]))) for b, g in zip(boxes, gts)
    ) / len(boxes)


def test_one_positive_logs_every_statistic():
    """Anchor 0 only, matched to GT0 with m = 0.6 (weight m^2 = 0.36) and s = 0.7: one positive
    (no 'max(P, 2)', no early return at 1), on level 0 (level 1's share is logged as 0)."""
    got = logged({0: (0, 0.6)})
    expected = {
        "dla/pos_level_0": 1.0,
        "dla/pos_level_1": 0.0,
        "dla/pos_metric_mean": 0.6,
        "dla/pos_weight_sum": 0.36,
        "dla/pos_score_mean": 0.7,
        "dla/pos_iou_prior": mean_iou([ANCHORS[0]], [GTS[0]]),  # 168 / 280 = 0.6
        "dla/pos_iou_pred": mean_iou([PRED[0]], [GTS[0]]),  # 168.48 / 215.52
        "dla/pos_degenerate": 0.0,
        "dla/pos_ltrb_zero": 0.0,
        "dla/pos_ltrb_all_zero": 0.0,
    }
    assert expected["dla/pos_iou_prior"] == pytest.approx(0.6)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k


@pytest.mark.parametrize("per_image_anchors", [False, True])
def test_zero_distances_and_degenerate_boxes_are_counted_exactly(per_image_anchors):
    """Every anchor positive. Distances at exactly 0 (not merely below 1): 2 of anchor 1, 2 of
    anchor 2, 4 of anchor 4 -> 8 / 20, each side 2 / 5; all four at 0: anchor 4 only (1 / 5).
    Zero area: anchors 1 (height 0), 2 (width 0) and 4; anchor 3's 0.1024 px^2 is not 0."""
    positives = {0: (0, 0.6), 1: (0, 0.5), 2: (0, 0.4), 3: (1, 0.3), 4: (1, 0.2)}
    got = logged(positives, per_image_anchors)
    gts = [GTS[g] for g, _ in positives.values()]
    expected = {
        "dla/pos_level_0": 0.8,
        "dla/pos_level_1": 0.2,
        "dla/pos_metric_mean": 0.4,
        "dla/pos_weight_sum": 0.36 + 0.25 + 0.16 + 0.09 + 0.04,
        "dla/pos_score_mean": 0.8,
        "dla/pos_iou_prior": mean_iou(ANCHORS, gts),
        "dla/pos_iou_pred": mean_iou(PRED, gts),
        "dla/pos_degenerate": 3 / 5,
        "dla/ltrb_zero": 8 / 20,
        "dla/pos_ltrb_zero": 8 / 20,
        "dla/pos_ltrb_all_zero": 1 / 5,
    }
    for prefix in ("dla/ltrb", "dla/pos_ltrb"):
        expected.update({f"{prefix}_{side}_zero": 2 / 5 for side in "ltrb"})
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k


# ---------------------------------------------------------------- the assigner's edges
# test_dla's hand case: one 3x3 level (stride 10, 10 px anchors), GT [-1, -1, 21, 21] of class 1,
# k = 3 -> candidates 1, 3, 4; anchor 4's predicted box is its anchor (IoU_pred = IoU_prior).
P4 = 100 / 484


def test_dla_assigner_defaults_and_arguments():
    assert DLAAssigner().extra_repr() == "topk=10, gamma=1.0, center_eps=0.01"
    assert DLAAssigner(topk=3, gamma=0.0, center_eps=0.5).extra_repr() == (
        "topk=3, gamma=0.0, center_eps=0.5"
    )


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_dla_regression_weight_is_m_to_the_gamma_for_gamma_below_one(gamma):
    """Eq. 5 with gamma = 0 (no re-weighting: w = 1) and 0.5 (w = sqrt(m)) on the hand case's
    single positive, anchor 1 (m = 0.9103)."""
    res = DLAAssigner(topk=3, gamma=gamma)(hand_case())
    m1 = res.extras["metric"][0, 1].item()
    assert m1 == pytest.approx(0.9103, abs=1e-4)
    assert res.weights[0, 1].item() == pytest.approx(m1**gamma, abs=1e-6)
    assert (res.weights[0, torch.arange(9) != 1] == 0).all()


def test_dla_assigner_input_checks_say_what_is_missing():
    inputs = hand_case()
    inputs.box_coder = None
    message = "DLAAssigner needs the detector's box_coder to decode pred_regression"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        DLAAssigner(topk=3)(inputs)
    inputs = hand_case()
    del inputs.extras["alpha"]
    message = "DLAAssigner needs inputs.extras['alpha'] (the DLA detector passes its current alpha)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        DLAAssigner(topk=3)(inputs)
    with pytest.raises(ValueError, match=r"^alpha must be in \[0, 1\], got 1.5$"):
        DLAAssigner(topk=3)(hand_case(alpha=1.5))


def test_dla_alpha_zero_is_the_class_score_alone():
    """alpha = 0 (Eq. 1's other end, valid): m = s; candidates 1, 3, 4 score 0.9, 0, 0.1."""
    res = DLAAssigner(topk=3)(hand_case(alpha=0.0))
    cands = res.extras["candidates"][0, 0].tolist()
    got = dict(zip(cands, res.extras["candidate_metric"][0, 0].tolist()))
    assert (got[1], got[3], got[4]) == pytest.approx((0.9, 0.0, 0.1), abs=1e-6)
    assert res.extras["alpha"].item() == 0.0
    assert res.matched_gt[0].eq(0).nonzero()[:, 0].tolist() == [1]


@pytest.mark.parametrize(
    "score, s",
    [(float("inf"), 0.0), (float("-inf"), 0.0), (float("nan"), 0.0), (1.5, 1.0), (-0.5, 0.0)],
)
def test_dla_out_of_range_class_score_is_clamped_to_a_probability(score, s):
    """Anchor 4's class-1 score: non-finite -> s = 0, then s clamped to [0, 1]; m = 0.1 s + 0.9
    IoU_prior (its predicted box is its anchor)."""
    inputs = hand_case()
    inputs.pred_scores[0, 4, 1] = score
    res = DLAAssigner(topk=3)(inputs)
    cands = res.extras["candidates"][0, 0].tolist()
    m4 = res.extras["candidate_metric"][0, 0, cands.index(4)].item()
    assert m4 == pytest.approx(0.1 * s + 0.9 * P4, abs=1e-6)
    assert res.extras["alpha"].item() == pytest.approx(0.9)


def test_dla_per_image_anchors_give_the_shared_anchors_result():
    shared = DLAAssigner(topk=3)(hand_case())
    inputs = hand_case()
    inputs.anchors = inputs.anchors[None].clone()  # (N, R, 4): the same anchors, per image
    per_image = DLAAssigner(topk=3)(inputs)
    assert torch.equal(per_image.matched_gt, shared.matched_gt)
    torch.testing.assert_close(
        per_image.extras["candidate_metric"], shared.extras["candidate_metric"]
    )


def test_dla_single_candidate_metric():
    """One anchor ([-5, -5, 5, 5]), one GT [-5, -5, 7, 5] (IoU_prior 100 / 120) of class 1 with
    s = 0.5 and the predicted box equal to the GT (ltrb 0.5, 0.5, 0.7, 0.5 at stride 10): N = M =
    C = 1. m = 0.5 * 0.5 + 0.5 * (0.5 * 100 / 120 + 0.5 * 1) at alpha 0.5."""
    inputs = make_inputs([(10, 10, 1, 1)], [[[-5.0, -5.0, 7.0, 5.0]]], [[1]])
    scores = torch.zeros(1, 1, K)
    scores[0, 0, 1] = 0.5
    reg = torch.tensor([[[0.5, 0.5, 0.7, 0.5]]])
    res = DLAAssigner(topk=3)(with_predictions(inputs, scores, reg, 0.5))
    expected = 0.25 + 0.5 * (0.5 * 100 / 120 + 0.5)
    assert res.extras["candidate_metric"].item() == pytest.approx(expected, abs=1e-6)
    assert res.extras["metric"][0, 0].item() == pytest.approx(expected, abs=1e-6)


def test_dla_candidate_metric_of_no_candidates_is_empty():
    cand_idx, cand_iou = torch.zeros(1, 1, 0, dtype=torch.long), torch.zeros(1, 1, 0)
    m = DLAAssigner(topk=3).candidate_metric(hand_case(), 0.9, cand_idx, cand_iou)
    assert m.shape == (1, 1, 0)


def test_dla_candidate_strides_skip_empty_levels_and_check_the_anchor_counts():
    inputs = hand_case()
    inputs.num_anchors_per_level = [9, 0]  # an empty last level (no locations)
    assert DLAAssigner(topk=3).candidate_strides(inputs).tolist() == [10.0] * 3
    inputs.num_anchors_per_level = [0, 9]
    assert DLAAssigner(topk=3).candidate_strides(inputs).tolist() == [10.0] * 3
    inputs.anchors, inputs.anchor_strides = torch.zeros(0, 4), torch.zeros(0)
    inputs.num_anchors_per_level = [0]
    assert DLAAssigner(topk=3).candidate_strides(inputs).shape == (0,)
    inputs = hand_case()
    inputs.num_anchors_per_level, inputs.anchors_per_location = [4, 5], [1, 2]
    with pytest.raises(ValueError, match=r"^DLA needs the same number of anchors per location"):
        DLAAssigner(topk=3).candidate_strides(inputs)
