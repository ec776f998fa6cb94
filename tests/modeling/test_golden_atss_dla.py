"""Golden values of ATSS (Zhang et al., CVPR 2020) and DLA (Jiang, Xiao, Gu, ICSCA 2022), both
variants (deltas from an anchor box; ltrb distances in stride units from the location), on the
tiny fixed case of ``golden_case`` with one 16 px anchor per location.

Every loss term against a hand computation: ATSS focal / EMA(P), 2 x GIoU loss weighted by the
centerness target / EMA(sum of centerness), centerness BCE / EMA(P); DLA focal / EMA(P), 2 x
GIoU weighted by w = m^gamma / EMA(sum w) (Eq. 5-6), the metric's quality focal loss toward m /
EMA(P) (Eq. 7), with m of Eq. 1-3 and alpha of Eq. 2 (fixed, Table 2, or scheduled). The
assignment (Algorithm 1: candidates, mean + std threshold, centre inside the GT) is recomputed
by hand with ``statistics``. Inference: ATSS's sqrt(p_cls x p_ctr) behind the p_cls gate, DLA's
four score modes.

The case: K = 2, GT0 = [2, 2, 18, 14] (class 1) and GT1 = [17, 15, 31, 31] (class 0); the four
anchors [0, 0, 16, 16], [16, 0, 32, 16], [0, 16, 16, 32], [16, 16, 32, 32] are every GT's
candidates (k = 9 > 4).
"""

import math
import statistics

import pytest
import torch
from fvcore.nn import sigmoid_focal_loss
from torchvision.ops import box_iou, generalized_box_iou

from semianchor.modeling.assigners import ATSSAssigner, DLAAssigner
from semianchor.modeling.box_coder import DeltaBoxCoder, LTRBBoxCoder
from semianchor.modeling.heads.dense_head import HeadOutput
from semianchor.modeling.meta_arch import ATSS, DLA

from . import golden_case as golden

K = 2
W = (10.0, 10.0, 5.0, 5.0)
STRIDE = 16.0
ANCHORS = [[0, 0, 16, 16], [16, 0, 32, 16], [0, 16, 16, 32], [16, 16, 32, 32]]
GTS = [[2, 2, 18, 14], [17, 15, 31, 31]]
GT_CLASSES = [1, 0]
CLS = [[-1.0, 0.8], [-2.0, -1.5], [-0.5, -3.0], [1.2, -0.7]]
QUALITY = [0.3, -1.0, 0.0, -0.4]  # ATSS's centerness logits, DLA's metric logits
REG = {
    "deltas": [[0.5, -0.3, 0.2, -0.1], [0.0] * 4, [0.0] * 4, [-1.0, 0.4, -0.3, 0.2]],
    "ltrb": [[0.4, 0.3, 0.6, 0.45], [0.1] * 4, [0.1] * 4, [0.5, 0.5, 0.4, 0.45]],
}


def coder(variant):
    return DeltaBoxCoder(weights=W) if variant == "deltas" else LTRBBoxCoder()


def decode(variant, reg):
    """Boxes from the regression by the variant's definition (Detectron2's deltas; ltrb x stride
    from the anchor centre)."""
    if variant == "deltas":
        return golden.oracle_decode(W, ANCHORS, reg)
    boxes = []
    for (x1, y1, x2, y2), (l, t, r, b) in zip(ANCHORS, reg):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        boxes.append([cx - l * STRIDE, cy - t * STRIDE, cx + r * STRIDE, cy + b * STRIDE])
    return torch.tensor(boxes)


def centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def centerness(anchor, gt):
    """FCOS Eq. 3 of the anchor centre w.r.t. the GT."""
    cx, cy = centre(anchor)
    l, t, r, b = cx - gt[0], cy - gt[1], gt[2] - cx, gt[3] - cy
    return math.sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))


def atss_rule(scores):
    """Algorithm 1 on per-GT candidate scores {gt: [score of anchor j]}: positive iff score >=
    mean + std (Bessel) and the anchor centre is inside the GT (margin 0.01); conflicts go to
    the highest score. Returns {anchor: gt}."""
    claims = {}
    for g, s in scores.items():
        threshold = statistics.mean(s) + statistics.stdev(s)
        for j, v in enumerate(s):
            cx, cy = centre(ANCHORS[j])
            x1, y1, x2, y2 = GTS[g]
            inside = min(cx - x1, cy - y1, x2 - cx, y2 - cy) > 0.01
            if v >= threshold and inside and (j not in claims or v > claims[j][1]):
                claims[j] = (g, v)
    return {j: g for j, (g, _) in sorted(claims.items())}


def iou(a, b):
    return float(box_iou(torch.as_tensor([a], dtype=torch.float32), torch.as_tensor([b]).float()))


def giou_loss(box, gt):
    return 1.0 - float(generalized_box_iou(box.view(1, 4), torch.tensor([gt]).float()))


def focal_sum(targets):
    return float(
        sigmoid_focal_loss(torch.tensor(CLS), targets, alpha=0.25, gamma=2.0, reduction="sum")
    )


def onehot(positives):
    t = torch.zeros(4, K)
    for j, g in positives.items():
        t[j, GT_CLASSES[g]] = 1.0
    return t


def flat(variant, quality_name, cls=CLS, quality=QUALITY, reg=None):
    return {
        "cls": torch.tensor([cls]),
        "reg": torch.tensor([reg or REG[variant]]),
        quality_name: torch.tensor([quality])[..., None],
    }


GENERATOR = dict(sizes=((16,),))


# ---------------------------------------------------------------- ATSS
def fixed_detector(meta_arch, quality_name, variant, assigner, **kw):
    """``meta_arch`` on the fixed head (classification, box regression and the ``quality_name``
    branch), one level of 16 px anchors, GIoU box loss weighted 2."""
    outputs = {"cls": HeadOutput(K), "reg": HeadOutput(4), quality_name: HeadOutput(1)}
    head = golden.FixedHead(outputs, 1)
    return meta_arch(
        **golden.detector_kwargs(
            head,
            golden.anchor_generator(**GENERATOR),
            box_coder=coder(variant),
            assigner=assigner,
            num_classes=K,
            box_loss_type="giou",
            box_loss_weight=2.0,
            **kw,
        )
    )


def atss(variant, **kw):
    assigner = ATSSAssigner(topk=9)
    kw = dict(box_loss_weighting="centerness", score_mode="sqrt_cls_quality", **kw)
    return fixed_detector(ATSS, "quality", variant, assigner, **kw)


def test_the_atss_case_is_what_the_docstring_says():
    model = atss("deltas")
    anchors = model.anchor_generator([torch.zeros(1, 1, 2, 2)])[0].tensor
    torch.testing.assert_close(anchors, torch.tensor(ANCHORS, dtype=torch.float32))
    positives = atss_rule({g: [iou(a, GTS[g]) for a in ANCHORS] for g in range(2)})
    assert positives == {0: 0, 3: 1}


@pytest.mark.parametrize("variant", ["deltas", "ltrb"])
def test_atss_every_loss_term_and_its_normaliser(variant):
    got = golden.training_losses(
        atss(variant), flat(variant, "quality"), [golden.gt_instances(GTS, GT_CLASSES)]
    )
    positives = atss_rule({g: [iou(a, GTS[g]) for a in ANCHORS] for g in range(2)})
    boxes = decode(variant, REG[variant])
    ctr = {j: centerness(ANCHORS[j], GTS[g]) for j, g in positives.items()}
    box = sum(ctr[j] * giou_loss(boxes[j], GTS[g]) for j, g in positives.items())
    bce = sum(
        ctr[j] * golden.softplus(-QUALITY[j]) + (1 - ctr[j]) * golden.softplus(QUALITY[j])
        for j in positives
    )
    expected = {
        "loss_atss_cls": focal_sum(onehot(positives)) / golden.ema_first(2),
        "loss_atss_box": 2.0 * box / golden.ema_first(sum(ctr.values())),
        "loss_atss_ctr": bce / golden.ema_first(2),
    }
    assert set(got) == set(expected)
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-5), (k, got, expected)


@pytest.mark.parametrize("variant", ["deltas", "ltrb"])
def test_atss_score_is_sqrt_cls_times_centerness_behind_the_cls_gate(variant):
    """Anchor 0: sqrt(p_cls x p_ctr). Anchor 1 passes the gate (p_cls 0.06 > 0.05) with a final
    score below it; anchor 2 has a final score 0.17 but p_cls 0.029 < 0.05: dropped."""
    cls = [[-8.0, 1.0], [-2.75, -8.0], [-3.5, -8.0], [-8.0, -8.0]]
    quality = [0.5, -3.0, 5.0, 0.0]
    reg = REG[variant]
    boxes = decode(variant, reg).clamp(0, 32)
    got = golden.detections(atss(variant), flat(variant, "quality", cls, quality, reg))[0]
    assert math.sqrt(golden.sigmoid(-3.5) * golden.sigmoid(5.0)) > 0.05 > golden.sigmoid(-3.5)
    golden.assert_detections(
        got,
        [
            (boxes[0].tolist(), math.sqrt(golden.sigmoid(1.0) * golden.sigmoid(0.5)), 1),
            (boxes[1].tolist(), math.sqrt(golden.sigmoid(-2.75) * golden.sigmoid(-3.0)), 0),
        ],
    )


# ---------------------------------------------------------------- DLA
def dla(variant, **kw):
    return fixed_detector(DLA, "metric", variant, DLAAssigner(topk=10, gamma=1.0), **kw)


def dla_metric(variant, alpha):
    """Eq. 1 and 3 for every (GT, anchor): m = (1 - alpha) s + alpha ((1 - s) IoU_prior + s
    IoU_pred), s = p(GT's class) at the anchor."""
    boxes = decode(variant, REG[variant])
    m = {}
    for g, gt in enumerate(GTS):
        m[g] = []
        for j, anchor in enumerate(ANCHORS):
            s = golden.sigmoid(CLS[j][GT_CLASSES[g]])
            geo = (1 - s) * iou(anchor, gt) + s * iou(boxes[j].tolist(), gt)
            m[g].append((1 - alpha) * s + alpha * geo)
    return m


def dla_expected(variant, alpha):
    m = dla_metric(variant, alpha)
    positives = atss_rule(m)
    boxes = decode(variant, REG[variant])
    w = {j: m[g][j] for j, g in positives.items()}  # gamma = 1
    box = sum(w[j] * giou_loss(boxes[j], GTS[g]) for j, g in positives.items())
    qfl = 0.0
    for j, x in enumerate(QUALITY):
        t, p = w.get(j, 0.0), golden.sigmoid(x)
        qfl += (t * golden.softplus(-x) + (1 - t) * golden.softplus(x)) * abs(t - p) ** 2
    return positives, {
        "loss_dla_cls": focal_sum(onehot(positives)) / golden.ema_first(len(positives)),
        "loss_dla_box": 2.0 * box / golden.ema_first(sum(w.values())),
        "loss_dla_metric": qfl / golden.ema_first(len(positives)),
    }


@pytest.mark.parametrize("variant", ["deltas", "ltrb"])
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_dla_every_loss_term_with_a_fixed_alpha(variant, alpha):
    """Table 2's fixed alpha; alpha = 1 (t = 0 of Eq. 2) and 0.5 give different values."""
    got = golden.training_losses(
        dla(variant, fixed_alpha=alpha),
        flat(variant, "metric"),
        [golden.gt_instances(GTS, GT_CLASSES)],
    )
    positives, expected = dla_expected(variant, alpha)
    assert positives, "the case must have positives"
    assert set(got) == set(expected)
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-5), (k, got, expected)


def test_dla_alpha_follows_eq2_at_the_storage_iteration():
    """iters_per_epoch 10, max_iter 100 (T = 10 epochs), iteration 50 (t = 5):
    alpha = 0.1 exp(-5 / sqrt(10)) + 0.9."""
    alpha = 0.1 * math.exp(-5 / math.sqrt(10)) + 0.9
    model = dla("ltrb", iters_per_epoch=10, max_iter=100)
    got = golden.training_losses(
        model, flat("ltrb", "metric"), [golden.gt_instances(GTS, GT_CLASSES)], iteration=50
    )
    _, expected = dla_expected("ltrb", alpha)
    _, at_one = dla_expected("ltrb", 1.0)
    assert expected["loss_dla_box"] != pytest.approx(at_one["loss_dla_box"], rel=1e-4)
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-5), (k, got, expected)


@pytest.mark.parametrize("mode", ["metric", "cls_metric", "sqrt_cls_metric", "cls"])
def test_dla_score_modes(mode):
    """Gate p_cls > 0.05, final score per mode: sigmoid(metric) (class-agnostic), the product,
    its square root, or p_cls. Anchor 2 (p_cls 0.029) is dropped in every mode."""
    cls = [[-8.0, 1.0], [-2.75, -8.0], [-3.5, -8.0], [-8.0, -8.0]]
    metric = [0.5, -3.0, 5.0, 0.0]
    boxes = decode("ltrb", REG["ltrb"]).clamp(0, 32)
    got = golden.detections(
        dla("ltrb", fixed_alpha=1.0, score_mode=mode), flat("ltrb", "metric", cls, metric)
    )[0]
    p = {0: golden.sigmoid(1.0), 1: golden.sigmoid(-2.75)}
    q = {0: golden.sigmoid(0.5), 1: golden.sigmoid(-3.0)}
    score = {
        "metric": lambda j: q[j],
        "cls_metric": lambda j: p[j] * q[j],
        "sqrt_cls_metric": lambda j: math.sqrt(p[j] * q[j]),
        "cls": lambda j: p[j],
    }[mode]
    expected = [(boxes[0].tolist(), score(0), 1), (boxes[1].tolist(), score(1), 0)]
    golden.assert_detections(got, expected)


@pytest.mark.parametrize("variant", ["deltas", "ltrb"])
def test_dla_logged_assignment_statistics(variant):
    """Two positives on the one level, their metric, prior IoU, score and predicted IoU; the
    LTRB coder also logs its zero (dead ReLU) channel shares, overall and of the positives."""
    got = golden.logged_scalars(
        dla(variant, fixed_alpha=0.5),
        flat(variant, "metric"),
        [golden.gt_instances(GTS, GT_CLASSES)],
    )
    keys = {"dla_alpha", "num_pos_anchors", "num_pos_per_gt", "dla/pos_level_0"}
    keys |= {f"dla/pos_{k}" for k in ("metric_mean", "weight_sum", "iou_prior", "score_mean")}
    keys |= {"dla/pos_iou_pred", "dla/pos_degenerate"}
    keys |= {"dla/loss_normalizer", "dla/loss_normalizer_weights"}
    if variant == "ltrb":
        for prefix in ("dla/ltrb", "dla/pos_ltrb"):
            keys |= {f"{prefix}_zero"} | {f"{prefix}_{c}_zero" for c in "ltrb"}
        keys.add("dla/pos_ltrb_all_zero")
    assert set(got) == keys
    assert got["num_pos_anchors"] == 2.0 and got["dla/pos_level_0"] == 1.0
    assert got["dla/pos_weight_sum"] == pytest.approx(2 * got["dla/pos_metric_mean"])
    assert got["dla/pos_degenerate"] == 0.0
