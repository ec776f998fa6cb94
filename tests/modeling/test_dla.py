"""DLA: the metric, the alpha schedule, the assigner on hand cases and against ATSS, the losses,
and the detector end to end (LazyConfig and yacs builds, training, inference, DefaultPredictor)."""

import math

import pytest
import torch

from detectron2.utils.events import EventStorage

from semianchor.layers import decode_boxes
from semianchor.modeling import DLA, DeltaBoxCoder, LTRBBoxCoder
from semianchor.modeling.assigners import ATSSAssigner, DLAAssigner, dla_metric
from semianchor.modeling.heads.dla_head import DLAHead
from semianchor.modeling.losses import pairwise_aligned_iou
from semianchor.modeling.meta_arch.dla import dla_alpha

from .conftest import NUM_CLASSES, detector_parts, make_batch
from .test_assigners import LEVEL, K, make_inputs

LAZY = "configs/COCO-Detection/dla_R_50_FPN_1x.py"
YACS = "configs/yacs/DLA_R_50_FPN_1x.yaml"


# ---------------------------------------------------------------- metric and schedule
def test_alpha_schedule_eq2():
    # a = (1 - a0) exp(-t / sqrt(T)) + a0
    assert dla_alpha(0, 12, 0.9) == 1.0  # semantic score off at the start
    # t = T = 12: 0.9 + 0.1 * exp(-sqrt(12)) = 0.9 + 0.1 * 0.031301 = 0.9031301
    assert dla_alpha(12, 12, 0.9) == pytest.approx(0.9031301, abs=1e-7)
    # t = sqrt(T) = 3 with T = 9: 0.9 + 0.1 / e = 0.9367879
    assert dla_alpha(3, 9, 0.9) == pytest.approx(0.9 + 0.1 / math.e)
    values = [dla_alpha(t / 4, 12, 0.9) for t in range(0, 4 * 13)]  # 0 .. 12.75 epochs
    assert all(a > b for a, b in zip(values, values[1:]))  # strictly decreasing
    assert all(v > 0.9 for v in values)
    assert dla_alpha(1000, 12, 0.9) == pytest.approx(0.9, abs=1e-12)  # tends to a0
    assert dla_alpha(5, 12, 1.0) == 1.0  # a0 = 1: geometry only ("fix, 1.0" of Table 2)
    with pytest.raises(ValueError):
        dla_alpha(1, 0)


def test_metric_eq1_eq3_and_limits_of_g():
    prior, pred = torch.tensor([0.4, 0.7]), torch.tensor([0.8, 0.1])
    # s = 0: g = IoU_prior; with alpha = 1, m = g
    assert torch.equal(dla_metric(torch.zeros(2), prior, pred, 1.0), prior)
    # s = 1: g = IoU_pred
    assert torch.allclose(dla_metric(torch.ones(2), prior, pred, 1.0), pred)
    # s = 1, alpha = 0.9: m = 0.1 * 1 + 0.9 * IoU_pred
    assert torch.allclose(dla_metric(torch.ones(2), prior, pred, 0.9), 0.1 + 0.9 * pred)
    # s = 0.5, prior 0.4, pred 0.8, alpha 0.9: g = 0.2 + 0.4 = 0.6; m = 0.05 + 0.54 = 0.59
    m = dla_metric(torch.tensor([0.5]), torch.tensor([0.4]), torch.tensor([0.8]), 0.9)
    assert m.item() == pytest.approx(0.59)
    # alpha = 0: m = s
    assert dla_metric(torch.tensor([0.3]), prior[:1], pred[:1], 0.0).item() == pytest.approx(0.3)


# ---------------------------------------------------------------- assigner
def with_predictions(inputs, scores, regression, alpha, coder=None):
    inputs.pred_scores = scores
    inputs.pred_regression = regression
    inputs.box_coder = coder or LTRBBoxCoder()
    inputs.extras["alpha"] = alpha
    return inputs


# One 3x3 level, stride 10, anchors 10x10 (test_assigners.LEVEL): anchor i has centre
# ((i % 3) * 10, (i // 3) * 10). GT [-1, -1, 21, 21] (22 x 22 = 484, centre (10, 10)), k = 3:
# candidates 4 (distance 0) and 1, 3 (distance 10, lowest indices); all three centres inside.
#   IoU_prior(4 = [5,5,15,15]) = 100 / 484 = 0.2066
#   IoU_prior(1 = [5,-5,15,5]) = 60 / 524 = 0.1145 (the same for 3)
# ATSS: threshold = 0.1452 + 0.0532 = 0.1984 -> only anchor 4.
# DLA, alpha 0.9, GT class 1:
#   anchor 1: s = 0.9, predicted box = the GT (IoU_pred = 1):
#       g = 0.1 * 0.1145 + 0.9 * 1 = 0.9115, m = 0.1 * 0.9 + 0.9 * 0.9115 = 0.9103
#   anchor 4: s = 0.1 (class 0 at 0.99 must not count), predicted box = its anchor:
#       g = 0.2066, m = 0.01 + 0.9 * 0.2066 = 0.1960
#   anchor 3: s = 0: m = 0.9 * 0.1145 = 0.1031
#   threshold = 0.4031 + 0.4417 = 0.8448 -> only anchor 1: the prediction moves the positive.
GT = [-1.0, -1.0, 21.0, 21.0]


def hand_case(alpha=0.9):
    inputs = make_inputs(LEVEL, [[GT]], [[1]])
    scores = torch.zeros(1, 9, K)
    scores[0, 1, 1] = 0.9
    scores[0, 4, 1] = 0.1
    scores[0, 4, 0] = 0.99
    reg = torch.full((1, 9, 4), 0.5)  # ltrb in stride units: 0.5 * 10 -> the anchor box itself
    reg[0, 1] = torch.tensor([1.1, 0.1, 1.1, 2.1])  # centre (10, 0) -> [-1, -1, 21, 21]
    return with_predictions(inputs, scores, reg, alpha)


def test_dla_hand_case_moves_the_positive_off_the_prior():
    inputs = hand_case()
    atss = ATSSAssigner(topk=3)(inputs)
    assert atss.matched_gt[0].eq(0).nonzero()[:, 0].tolist() == [4]
    res = DLAAssigner(topk=3)(inputs)
    assert sorted(res.extras["candidates"][0, 0].tolist()) == [1, 3, 4]
    assert res.matched_gt[0].eq(0).nonzero()[:, 0].tolist() == [1]
    assert res.labels[0, 1] == 1 and (res.labels[0, torch.arange(9) != 1] == K).all()
    p4, p1 = 100 / 484, 60 / 524
    m1 = 0.1 * 0.9 + 0.9 * (0.1 * p1 + 0.9 * 1.0)
    m4 = 0.1 * 0.1 + 0.9 * p4
    m3 = 0.9 * p1
    ms = torch.tensor([m1, m3, m4], dtype=torch.float64)
    assert (m1, m4, m3) == pytest.approx((0.9103, 0.1960, 0.1031), abs=1e-4)
    cands = res.extras["candidates"][0, 0].tolist()
    got = {c: v for c, v in zip(cands, res.extras["candidate_metric"][0, 0].tolist())}
    assert (got[1], got[3], got[4]) == pytest.approx((m1, m3, m4), abs=1e-5)
    assert res.extras["threshold"][0, 0].item() == pytest.approx(
        (ms.mean() + ms.std()).item(), abs=1e-5
    )
    assert res.extras["threshold"][0, 0].item() == pytest.approx(0.8448, abs=1e-4)
    # the metric head's target and the regression weight (gamma = 1): m on the positive, 0 elsewhere
    assert res.extras["metric"][0, 1].item() == pytest.approx(m1, abs=1e-5)
    assert res.weights[0, 1].item() == pytest.approx(m1, abs=1e-5)
    assert (res.extras["metric"][0, torch.arange(9) != 1] == 0).all()
    assert (res.weights[0, torch.arange(9) != 1] == 0).all()
    # gamma = 2: w = m^2 (Eq. 5); the assignment itself does not change
    res2 = DLAAssigner(topk=3, gamma=2.0)(inputs)
    assert torch.equal(res2.matched_gt, res.matched_gt)
    assert res2.weights[0, 1].item() == pytest.approx(m1**2, abs=1e-5)


def test_dla_at_alpha_one_is_prior_until_the_score_grows():
    # alpha = 1 (start of training): m = g = (1 - s) IoU_prior + s IoU_pred. With anchor 1's
    # s = 0.9 the predicted IoU already dominates: m1 = 0.1 * 0.1145 + 0.9 = 0.9115 -> anchor 1.
    res = DLAAssigner(topk=3)(hand_case(alpha=1.0))
    assert res.matched_gt[0].eq(0).nonzero()[:, 0].tolist() == [1]
    # s = 0 everywhere: back to the prior, anchor 4 as ATSS
    inputs = hand_case(alpha=1.0)
    inputs.pred_scores = torch.zeros_like(inputs.pred_scores)
    res = DLAAssigner(topk=3)(inputs)
    assert res.matched_gt[0].eq(0).nonzero()[:, 0].tolist() == [4]


def test_dla_conflict_goes_to_highest_metric():
    # Two GTs share candidate 4. GT a = [3,3,17,17] (class 0): candidates 4, 1, 3, only 4 inside;
    # IoU_prior(4) = 100/196 = 0.510. GT b = [5,5,16,16] (class 2): IoU_prior(4) = 100/121 = 0.826.
    # Prior only (s = 0, alpha 1): anchor 4 -> b. With s(4, class 0) = 1 and the predicted box
    # equal to a, m_a(4) = 1 > m_b(4) = 0.826 (s for class 2 is 0) -> a.
    gts = [[3.0, 3, 17, 17], [5.0, 5, 16, 16]]
    inputs = make_inputs(LEVEL, [gts], [[0, 2]])
    reg = torch.full((1, 9, 4), 0.5)
    reg[0, 4] = torch.tensor([0.7, 0.7, 0.7, 0.7])  # centre (10, 10) -> [3, 3, 17, 17]
    with_predictions(inputs, torch.zeros(1, 9, K), reg, 1.0)
    assert DLAAssigner(topk=3)(inputs).matched_gt[0, 4] == 1
    inputs.pred_scores[0, 4, 0] = 1.0
    res = DLAAssigner(topk=3)(inputs)
    assert res.matched_gt[0, 4] == 0 and res.labels[0, 4] == 0
    assert res.extras["metric"][0, 4].item() == pytest.approx(1.0, abs=1e-5)


def random_case(seed, coder):
    g = torch.Generator().manual_seed(seed)
    levels = [(8, 32, 8, 8), (16, 64, 4, 4), (32, 128, 2, 2)]
    gts = []
    for _ in range(2):
        m = int(torch.randint(0, 10, (1,), generator=g))
        xy = torch.rand(m, 2, generator=g) * 60
        wh = torch.rand(m, 2, generator=g) * 50 + 1
        gts.append(torch.cat([xy, xy + wh], 1).round().tolist())  # integer coords -> ties happen
    inputs = make_inputs(levels, gts)
    R = inputs.anchors.shape[0]
    scores = torch.rand(2, R, K, generator=g)
    reg = torch.rand(2, R, 4, generator=g) * 2
    return with_predictions(inputs, scores, reg, 1.0, coder)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "coder", [LTRBBoxCoder(), DeltaBoxCoder(weights=(10.0, 10.0, 5.0, 5.0))], ids=str
)
def test_dla_with_zero_scores_and_alpha_one_equals_atss(seed, coder):
    inputs = random_case(seed, coder)
    inputs.pred_scores = torch.zeros_like(inputs.pred_scores)  # s = 0 -> m = IoU_prior exactly
    for k in (3, 10):
        atss = ATSSAssigner(topk=k)(inputs)
        dla = DLAAssigner(topk=k)(inputs)
        assert torch.equal(dla.extras["candidates"], atss.extras["candidates"])
        assert torch.equal(dla.matched_gt, atss.matched_gt)
        assert torch.equal(dla.labels, atss.labels)
        assert torch.equal(dla.extras["threshold"], atss.extras["threshold"])


@pytest.mark.parametrize(
    "coder", [LTRBBoxCoder(), DeltaBoxCoder(weights=(10.0, 10.0, 5.0, 5.0))], ids=str
)
def test_dla_candidate_metric_against_dense_computation(coder):
    """m on every (GT, candidate) pair against a dense PyTorch evaluation of Eq. 1 and 3 (checks
    the gathering of s by the GT's class and IoU_pred from the kernel)."""
    inputs = random_case(11, coder)
    alpha = 0.93
    inputs.extras["alpha"] = alpha
    res = DLAAssigner(topk=4)(inputs)
    cand = res.extras["candidates"]
    N, M, C = cand.shape
    boxes = decode_boxes(
        inputs.anchors, inputs.pred_regression, **coder.kernel_kwargs(inputs.anchor_strides)
    )
    for n in range(N):
        for m in range(int(inputs.gt_counts[n])):
            idx = cand[n, m]
            gt = inputs.gt_boxes[n, m]
            s = inputs.pred_scores[n, idx, inputs.gt_classes[n, m]]
            prior = pairwise_aligned_iou(inputs.anchors[idx], gt.expand(C, 4))[0]
            pred = pairwise_aligned_iou(boxes[n, idx], gt.expand(C, 4))[0]
            expected = (1 - alpha) * s + alpha * ((1 - s) * prior + s * pred)
            assert torch.allclose(res.extras["candidate_metric"][n, m], expected, atol=1e-5), (n, m)
    # positives: m >= threshold and centre inside; weights = m of the winning GT
    pos = res.matched_gt >= 0
    assert torch.equal(res.weights[pos], res.extras["metric"][pos])


def test_dla_assigner_needs_predictions_and_alpha():
    inputs = make_inputs(LEVEL, [[GT]])
    with pytest.raises(ValueError, match="pred_scores"):
        DLAAssigner()(inputs)
    inputs = hand_case()
    del inputs.extras["alpha"]
    with pytest.raises(ValueError, match=r"^DLAAssigner needs inputs.extras\['alpha'\] \(the DLA"):
        DLAAssigner()(inputs)


def test_dla_assigner_empty_images_and_non_finite_predictions():
    inputs = make_inputs(LEVEL, [[], [GT]], [[], [1]])
    scores = torch.zeros(2, 9, K)
    reg = torch.full((2, 9, 4), 0.5)
    reg[1, 1] = float("nan")  # a diverged prediction scores IoU_pred = 0, never NaN
    scores[1, 3, 1] = float("nan")
    res = DLAAssigner(topk=3)(with_predictions(inputs, scores, reg, 0.9))
    assert (res.labels[0] == K).all() and (res.matched_gt[0] == -1).all()
    assert torch.isfinite(res.extras["candidate_metric"]).all()
    assert res.matched_gt[1, 4] == 0  # prior-like case: anchor 4 as ATSS


# ---------------------------------------------------------------- detector
def tiny_dla(lazy_model, **overrides):
    model = lazy_model(LAZY)
    for k, v in overrides.items():
        setattr(model, k, v)
    return model


def test_lazy_and_yacs_builds_agree(lazy_model, yacs_model):
    lazy = lazy_model(LAZY)
    yacs, cfg = yacs_model(YACS)
    for m in (lazy, yacs):
        assert (
            isinstance(m, DLA)
            and isinstance(m.head, DLAHead)
            and isinstance(m.assigner, DLAAssigner)
        )
        assert isinstance(m.box_coder, LTRBBoxCoder)  # anchor-free by default, as the paper
        assert m.assigner.topk == 10 and m.assigner.gamma == 1.0
        assert m.score_mode == "metric" and m.box_loss_weight == 2.0 and m.metric_loss_weight == 1.0
        assert m.alpha0 == 0.9 and m.fixed_alpha is None
        assert "quality" not in m.head.output_dims and m.head.output_dims["metric"] == 1
    assert any(k.startswith("head.metric_reduce") for k in lazy.state_dict())
    # metric branch: 1x1 conv from the concatenated towers (2C) to C, 3x3 conv to A = 1 channel
    assert lazy.head.metric_reduce.weight.shape[1:] == (2 * 64, 1, 1)
    assert lazy.head.metric_pred.weight.shape[:2] == (
        1,
        64,
    ) and lazy.head.metric_pred.kernel_size == (3, 3)


def test_training_step_with_empty_gt_image_and_alpha_logged(lazy_model):
    model = tiny_dla(lazy_model)
    model.set_training_schedule(iters_per_epoch=10, max_iter=120)  # T = 12 epochs
    model.train()
    seen = {}
    assign = model.assigner.assign

    def spy(inputs):
        seen["inputs"] = inputs
        return assign(inputs)

    model.assigner.assign = spy
    with EventStorage(start_iter=120) as storage:  # t = 12 = T
        losses = model(make_batch(3, size=64, empty=(1,)))
        alpha = storage.latest()["dla_alpha"][0]
    assert alpha == pytest.approx(0.9031301, abs=1e-6)
    assert seen["inputs"].extras["alpha"] == alpha
    assert (
        not seen["inputs"].pred_scores.requires_grad
        and not seen["inputs"].pred_regression.requires_grad
    )
    assert set(losses) == {"loss_dla_cls", "loss_dla_box", "loss_dla_metric"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with EventStorage(start_iter=0) as storage:
        model(make_batch(1, size=64))
        assert storage.latest()["dla_alpha"][0] == 1.0


def test_alpha_needs_a_schedule_or_a_fixed_value(lazy_model):
    # the shipped config carries the COCO 1x schedule (117266 / 16 iterations per epoch, 90k)
    assert (tiny_dla(lazy_model).iters_per_epoch, tiny_dla(lazy_model).max_iter) == (
        117266 / 16,
        90000,
    )
    model = tiny_dla(lazy_model, iters_per_epoch=None, max_iter=None)  # a model without one
    model.train()
    message = r"set_training_schedule\(iters_per_epoch=len\(train dataset\) / total batch size, "
    with EventStorage(), pytest.raises(RuntimeError, match=message):
        model(make_batch(1, size=64))
    model.fixed_alpha = 0.8
    with EventStorage(start_iter=50) as storage:
        model(make_batch(1, size=64))
        assert storage.latest()["dla_alpha"][0] == 0.8
    with pytest.raises(ValueError):
        model.set_training_schedule(iters_per_epoch=0, max_iter=10)


def test_losses_follow_eq6_and_eq7(lazy_model):
    """Recompute the box and metric losses from the assignment: box = b * sum(w * (1 - GIoU)) /
    sum(w) with w = m (gamma = 1), metric = sum QFL(c, m) / N_pos (momentum 0: this batch's
    values; both normalisers are floored at 1 as Detectron2's)."""
    model = tiny_dla(lazy_model, fixed_alpha=0.9, loss_normalizer_momentum=0.0)
    model.train()
    captured = {}
    losses_fn = model.losses

    def spy(inputs, preds, result):
        captured.update(inputs=inputs, preds=preds, result=result)
        return losses_fn(inputs, preds, result)

    model.losses = spy
    with EventStorage() as storage:
        losses = model(make_batch(2, size=64, seed=5))
        logged = storage.latest()
    inputs, preds, result = captured["inputs"], captured["preds"], captured["result"]
    pos = result.labels.lt(NUM_CLASSES) & result.labels.ge(0)
    P = int(pos.sum())
    assert P > 0
    n, r = pos.nonzero(as_tuple=True)
    boxes = model.box_coder.decode(
        inputs.anchors[r][None], preds["reg"][n, r].float()[None], inputs.anchor_strides[r]
    )[0]
    gt = inputs.gt_boxes[n, result.matched_gt[n, r]]
    _, giou = pairwise_aligned_iou(boxes, gt)
    w = result.extras["metric"][n, r]
    assert torch.equal(result.weights[n, r], w) and (w > 0).all()
    expected_box = 2.0 * (w * (1 - giou)).sum() / max(float(w.sum()), 1.0)
    assert losses["loss_dla_box"].item() == pytest.approx(expected_box.item(), rel=1e-4)
    # the divisors are in the log: sum(w) for the box loss, N_pos for the others
    assert logged["dla/loss_normalizer_weights"][0] == pytest.approx(max(float(w.sum()), 1.0))
    assert logged["dla/loss_normalizer"][0] == max(P, 1)
    # Eq. 7 written out: positives |c - m|^2 BCE(c, m), negatives c^2 BCE(c, 0)
    c = torch.sigmoid(preds["metric"][..., 0].float())
    t = result.extras["metric"]
    bce = -(t * torch.log(c) + (1 - t) * torch.log(1 - c))
    eq7 = ((c - t).abs() ** 2 * bce)[pos].sum() + (c**2 * bce)[~pos].sum()
    assert losses["loss_dla_metric"].item() == pytest.approx((eq7 / max(P, 1)).item(), rel=1e-4)
    # gamma = 0: no re-weighting, plain mean over the positives
    model.assigner.gamma = 0.0
    with EventStorage():
        losses0 = model(make_batch(2, size=64, seed=5))
    assert losses0["loss_dla_box"].item() == pytest.approx(
        (2.0 * (1 - giou).sum() / max(P, 1)).item(), rel=1e-4
    )


def test_inference_ranks_by_the_metric(lazy_model):
    model = tiny_dla(lazy_model)
    model.eval()
    model.test_score_thresh = 0.0  # untrained: accept everything so the path is exercised
    batch = make_batch(1, size=80)
    with torch.no_grad():
        features = model.backbone(model.preprocess_image(batch).tensor)
        preds = model.head([features[f] for f in model.head_in_features])
        out = model(batch)[0]["instances"]
    assert 0 < len(out) <= model.max_detections_per_image
    assert out.pred_classes.max() < NUM_CLASSES and torch.isfinite(out.pred_boxes.tensor).all()
    # default score = sigmoid(metric) of the box's location, whatever its class probability
    metric_probs = torch.cat([torch.sigmoid(x[0]).flatten() for x in preds["metric"]])
    for s in out.scores[:5]:
        assert torch.isclose(metric_probs, s).any()
    # level_scores: gate = p_cls, final = p_metric / p_cls * p_metric / sqrt
    level = {"cls": torch.tensor([[0.0, 2.0]]), "metric": torch.tensor([[-1.0]])}
    pc, pm = torch.sigmoid(level["cls"]), torch.sigmoid(level["metric"])
    for mode, expected in [
        ("metric", pm.expand(1, 2)),
        ("cls_metric", pc * pm),
        ("sqrt_cls_metric", (pc * pm).sqrt()),
        ("cls", pc),
    ]:
        model.score_mode = mode
        gate, final = model.level_scores(level)
        assert torch.equal(gate, pc) and torch.allclose(final, expected), mode


def test_bad_constructor_arguments_raise(lazy_model):
    model = lazy_model(LAZY)
    kw = dict(num_classes=NUM_CLASSES, **detector_parts(model))
    with pytest.raises(ValueError, match="score_mode"):
        DLA(score_mode="sqrt_cls_quality", **kw)
    with pytest.raises(ValueError, match="box_loss_weighting"):
        DLA(box_loss_weighting="centerness", **kw)
    with pytest.raises(ValueError, match="both"):
        DLA(iters_per_epoch=10, **kw)
    with pytest.raises(ValueError, match="fixed_alpha"):
        DLA(fixed_alpha=1.5, **kw)


def test_anchor_based_variant_trains(lazy_model):
    model = lazy_model("projects/DLA/configs/dla_anchor_based_R_50_FPN_1x.py")
    assert isinstance(model, DLA) and isinstance(model.box_coder, DeltaBoxCoder)
    assert model.head.regression_activation == "none"
    model.fixed_alpha = 0.9
    model.train()
    with EventStorage():
        losses = model(make_batch(2, size=64))
    assert set(losses) == {"loss_dla_cls", "loss_dla_box", "loss_dla_metric"}
    assert all(torch.isfinite(v) for v in losses.values())


# ---------------------------------------------------------------- a dead ltrb channel
def test_relu_straight_through_is_relu_forward_identity_backward():
    from semianchor.modeling.heads.dense_head import relu_straight_through

    x = torch.tensor([-2.0, -0.0, 0.0, 1e-8, 3.5], requires_grad=True)
    y = relu_straight_through(x)
    assert torch.equal(y, torch.relu(x.detach()))  # bit for bit
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def _train_with_dead_bottom_channel(lazy_model, activation, steps=8):
    """A tiny DLA whose bottom distance (ltrb channel 3) is negative before the ReLU at every
    location, as the quickstart model's failing seed is born (benchmarks/DLA_COLLAPSE.md);
    ``steps`` SGD steps on one fixed batch. Returns per step (loss_dla_box, channel 3's bias
    gradient, share of the positives' bottom distances at 0)."""
    model = tiny_dla(lazy_model, fixed_alpha=1.0, loss_normalizer_momentum=0.0)
    model.head.regression_activation = activation
    with torch.no_grad():  # pre-activation -0.05 everywhere: born dead (zero weights, bias < 0)
        model.head.bbox_pred.weight[3] = 0.0
        model.head.bbox_pred.bias[3] = -0.05
    model.train()
    optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = make_batch(2, size=64, seed=5)
    history = []
    for step in range(steps):
        with EventStorage(step) as storage:
            losses = model(batch)
            zero_share = storage.latest()["dla/pos_ltrb_b_zero"][0]
        optim.zero_grad()
        sum(losses.values()).backward()
        history.append(
            (losses["loss_dla_box"].item(), model.head.bbox_pred.bias.grad[3].item(), zero_share)
        )
        optim.step()
    return history


def test_dead_ltrb_channel_never_learns_under_relu_and_revives_straight_through(lazy_model):
    """The dead-channel mechanism. Plain ReLU (the paper configs): the dead channel gets exactly
    zero gradient at every step, so every positive's box keeps its bottom side at the location's
    centre for good. Straight-through (the quickstart's fix): same first forward pass (same
    losses), a gradient that raises the channel (negative bias gradient: SGD adds), and the
    positives' bottom distances leave 0."""
    relu = _train_with_dead_bottom_channel(lazy_model, "relu")
    fixed = _train_with_dead_bottom_channel(lazy_model, "relu_straight_through")
    assert relu[0][0] == fixed[0][0]  # identical forward pass
    assert all(grad == 0.0 for _, grad, _ in relu)
    assert all(share == 1.0 for _, _, share in relu)
    assert fixed[0][1] < 0.0
    assert fixed[-1][2] < 1.0


def test_quickstart_configs_use_the_fix_and_the_paper_config_the_plain_relu(lazy_model, yacs_model):
    """The from-scratch quickstart DLA (LazyConfig and its yacs twin) passes the
    gradient below zero; the COCO paper config keeps the plain ReLU (same forward values). DLA's
    classification loss is never re-weighted by m (the box weighting does not reach it)."""
    from detectron2.config import LazyConfig

    from .conftest import REPO

    for name in ("dla_R18_shapes.py", "dla_R18_coco_json.py"):
        cfg = LazyConfig.load(f"{REPO}/configs/quickstart/{name}")
        assert cfg.model.head.regression_activation == "relu_straight_through", name
    paper = lazy_model(LAZY)
    assert paper.head.regression_activation == "relu" and paper.cls_loss_weighting == "none"
    twin, _ = yacs_model("configs/yacs/DLA_R18_shapes.yaml")
    assert twin.head.regression_activation == "relu_straight_through"


def test_dla_assigner_gamma_is_checked():
    with pytest.raises(ValueError, match=r"^gamma must be >= 0, got -1.0$"):
        DLAAssigner(gamma=-1.0)


def test_alpha_schedule_uses_its_alpha0_and_checks_max_iter():
    """The detector's own alpha0 (0.5, not the default 0.9), 10 iterations per epoch, T = 10."""
    schedule = object.__new__(DLA)  # the schedule's state only: no network is needed
    schedule.fixed_alpha, schedule.schedule_from_datasets, schedule.alpha0 = None, None, 0.5
    schedule.set_training_schedule(iters_per_epoch=10, max_iter=100)
    assert schedule.alpha_at(50) == pytest.approx(dla_alpha(5.0, 10.0, 0.5))
    assert schedule.alpha_at(50) != pytest.approx(dla_alpha(5.0, 10.0))
    with pytest.raises(ValueError, match=r"^max_iter must be > 0, got 0$"):
        schedule.set_training_schedule(iters_per_epoch=10, max_iter=0)
