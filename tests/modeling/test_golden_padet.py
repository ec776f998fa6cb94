"""Golden values of PADet (Tang et al. 2019) on the tiny fixed case of ``golden_case``: every loss
term (APM: BCE + smooth-L1 on the initial anchors, / N_apm; detection: softmax CE with hard
negatives + smooth-L1 on the promoted anchors, / N_det) against a hand computation, Table 2's
components (APM_C = theta, APM_R = promote) by their effect on the values, the inference of
Sec. 2.4 (decode from the promoted anchors, the theta gate, per-class linear soft-NMS whose
decayed scores are visible where a hard NMS would drop the box) and the FAM's offsets in every
Table 1 mode.

The training case: K = 2 (softmax over K + 1, background last), one GT [0, 0, 16, 16] of class 0
= anchor 0. Initial matching (IoU >= 0.5 positive, < 0.3 negative): anchor 0 positive, the others
negative. The APM moves anchor 0 a little and shrinks anchor 1 (32 px) onto the GT, so the
promoted matching has positives {0, 1}. APM scores below theta = 0.01: anchors 1, 4, 5.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from semianchor.modeling.assigners import MaxIoUAssigner, StagedAssigner
from semianchor.modeling.assigners.padet import PromotedAnchorAssigner
from semianchor.modeling.box_coder import DeltaBoxCoder, LTRBBoxCoder
from semianchor.modeling.heads.dense_head import HeadOutput
from semianchor.modeling.heads.padet_head import FeatureAlignment
from semianchor.modeling.meta_arch import PADet

from . import golden_case as golden

K = 2
W = (10.0, 10.0, 5.0, 5.0)  # SSD variances (0.1, 0.2)
GT = [0, 0, 16, 16]
LOG_HALF = 5 * math.log(0.5)
ZERO = [0.0] * 4

APM_REG = [[1.0, -0.4, 0.2, 0.0], [0.0, 0.0, LOG_HALF, LOG_HALF]] + [ZERO] * 6
APM_CLS = [0.5, -6.0, 0.0, 1.0, -6.0, -6.0, 2.0, -1.0]
DET_CLS = [
    [1.5, -0.5, 0.0],
    [0.2, 0.1, 0.0],
    [0.0, 0.0, 3.0],
    [1.0, 1.0, 0.0],
    [5.0, 0.0, 0.0],
    [5.0, 0.0, 0.0],
    [0.0, 0.0, 0.0],
    [0.0, 0.0, 5.0],
]
DET_REG = [[0.3, -0.2, 0.1, 1.5], [0.5, 0.5, -0.2, 0.1]] + [ZERO] * 6


def padet(
    promote=True,
    theta=0.01,
    neg_pos_ratio=1.0,
    branches=None,
    stage=None,
    assigner=None,
    sizes=(16, 32),
    box_coder=None,
    **kw,
):
    """The golden PADet; ``branches`` (APM_C, APM_R) the head builds and ``stage`` (promote,
    theta) of the promoted assigner stage default to the model's (a mismatch is an error)."""
    scoring, adjustment = branches or (theta is not None, promote)
    outputs = {"cls": HeadOutput(K + 1), "reg": HeadOutput(4)}
    if scoring:
        outputs["apm_cls"] = HeadOutput(1)
    if adjustment:
        outputs["apm_reg"] = HeadOutput(4)
    band = dict(thresholds=[0.3, 0.5], labels=[0, -1, 1])
    stage_promote, stage_theta = stage or (promote, theta)
    assigner = assigner or StagedAssigner(
        stages=[
            ("initial", MaxIoUAssigner(**band)),
            ("promoted", PromotedAnchorAssigner(**band, promote=stage_promote, theta=stage_theta)),
        ]
    )
    return PADet(
        **golden.detector_kwargs(
            golden.FixedHead(outputs, [len(sizes)]),
            golden.anchor_generator(sizes=(sizes,)),
            box_coder=box_coder or DeltaBoxCoder(weights=W),
            assigner=assigner,
            num_classes=K,
            use_apm=promote or theta is not None,
            promote=promote,
            theta=theta,
            neg_pos_ratio=neg_pos_ratio,
            **kw,
        )
    )


def head_outputs(cls, reg, apm_cls, apm_reg, promote, theta):
    """The fixed head's outputs for one image: the detection head's, plus the APM's
    classification when the theta rule is on and its regression when anchors are promoted."""
    flat = {"cls": torch.tensor([cls]), "reg": torch.tensor([reg])}
    if theta is not None:
        flat["apm_cls"] = torch.tensor([apm_cls])[..., None]
    if promote:
        flat["apm_reg"] = torch.tensor([apm_reg])
    return flat


def train_flat(promote=True, theta=0.01):
    return head_outputs(DET_CLS, DET_REG, APM_CLS, APM_REG, promote, theta)


def softmax_ce(logits, label):
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def max_iou_labels(anchors):
    """Per anchor: 0 (the GT's class) positive, K negative, -1 ignored: IoU >= 0.5, < 0.3, the
    band between ignored; the GT's best anchor positive (low-quality match)."""
    iou = box_iou(torch.as_tensor(anchors, dtype=torch.float32), torch.tensor([GT]).float())[:, 0]
    labels = [0 if v >= 0.5 else K if v < 0.3 else -1 for v in iou.tolist()]
    labels[int(iou.argmax())] = 0
    return labels


def mined(losses, labels, ratio):
    """Positives and the ratio x P negatives of highest loss (the hard-negative mining, P6);
    ratio None: every negative (the paper's loss)."""
    pos = [i for i, c in enumerate(labels) if 0 <= c < K]
    neg = sorted((i for i, c in enumerate(labels) if c == K), key=lambda i: -losses[i])
    return pos + (neg if ratio is None else neg[: int(max(len(pos), 1) * ratio)])


def hand_losses(promote=True, theta=0.01, ratio=1.0, apm_ratio=3.0, momentum=0.9):
    """Sec. 3.3 with hard-negative mining (or every negative: ratios None, momentum 0), written
    out on the case."""
    out = {}
    initial = max_iou_labels(golden.ANCHORS_16_32)
    if promote or theta is not None:
        n_apm = golden.ema_first(sum(c == 0 for c in initial), momentum)
    if theta is not None:  # APM_C: BCE of the positive logit, mined
        bce = [
            golden.softplus(-x) if initial[i] == 0 else golden.softplus(x)
            for i, x in enumerate(APM_CLS)
        ]
        out["loss_padet_apm_cls"] = sum(bce[i] for i in mined(bce, initial, apm_ratio)) / n_apm
    if promote:  # APM_R: smooth-L1 (beta 1) toward the initial positives' GT
        box = 0.0
        for i in (i for i, c in enumerate(initial) if c == 0):
            target = golden.oracle_encode(W, golden.ANCHORS_16_32[i], GT)[0].tolist()
            box += sum(golden.smooth_l1(d - t, 1.0) for d, t in zip(APM_REG[i], target))
        out["loss_padet_apm_box"] = box / n_apm
    anchors = (
        golden.oracle_decode(W, golden.ANCHORS_16_32, APM_REG) if promote else golden.ANCHORS_16_32
    )
    labels = max_iou_labels(anchors)
    if theta is not None:  # a negative the APM scores below theta is ignored
        p_apm = [1 / (1 + math.exp(-x)) for x in APM_CLS]
        labels = [-1 if c == K and p_apm[i] < theta else c for i, c in enumerate(labels)]
    ce = [softmax_ce(DET_CLS[i], max(c, 0)) for i, c in enumerate(labels)]
    n_det = golden.ema_first(sum(c == 0 for c in labels), momentum)
    out["loss_padet_cls"] = sum(ce[i] for i in mined(ce, labels, ratio)) / n_det
    box = 0.0
    for i in (i for i, c in enumerate(labels) if c == 0):
        target = golden.oracle_encode(W, anchors[i], GT)[0].tolist()
        box += sum(golden.smooth_l1(d - t, 1.0) for d, t in zip(DET_REG[i], target))
    out["loss_padet_box"] = box / n_det
    return out, labels


def assert_losses(got, expected):
    assert set(got) == set(expected)
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-5, abs=1e-7), (k, got, expected)


def test_the_case_is_what_the_docstring_says():
    assert max_iou_labels(golden.ANCHORS_16_32) == [0] + [K] * 7
    _, labels = hand_losses()
    assert labels == [0, 0, K, K, -1, -1, K, K]


def test_every_loss_term_and_its_normaliser():
    """N_det = EMA(2 promoted positives) = 90.2, N_apm = EMA(1 initial positive) = 90.1; the
    detection CE mines anchors 3 and 6 (ratio 1), never the ignored 4 and 5 (highest CE); the
    APM BCE mines 6, 3, 2 (ratio 3); the detection box targets are the deltas to the *promoted*
    anchors (anchor 1's is ~0, to its initial 32 px square it would be -3.5 in w and h)."""
    got = golden.training_losses(padet(), train_flat(), [golden.gt_instances([GT], [0])])
    expected, _ = hand_losses()
    assert_losses(got, expected)
    assert mined([0] * 8, [0, 0, K, K, -1, -1, K, K], 1.0)[:2] == [0, 1]


PAPER_LOSS = dict(loss_mode="paper", neg_pos_ratio=0.0, apm_neg_pos_ratio=0.0)


@pytest.mark.parametrize(
    "kwargs, hand",
    [
        (dict(neg_pos_ratio=3.0), dict(ratio=3.0)),
        (PAPER_LOSS, dict(ratio=None, apm_ratio=None, momentum=0.0)),
    ],
    ids=["ohem_ratio_3", "paper"],
)
def test_the_negatives_and_normalisers_of_each_loss_mode(kwargs, hand):
    """ "ohem" with ratio 3 (the DSSD/RefineDet default); "paper" (Sec. 3.3 literally): every
    negative the theta rule leaves trains (APM: the 7 of the initial matching; detection: 2, 3, 6,
    7), over this step's positive counts N_apm = 1, N_det = 2 (no EMA)."""
    got = golden.training_losses(padet(**kwargs), train_flat(), [golden.gt_instances([GT], [0])])
    assert_losses(got, hand_losses(**hand)[0])


@pytest.mark.parametrize(
    "promote, theta",
    [(False, None), (False, 0.01), (True, None)],
    ids=["baseline", "apm_c", "apm_r"],
)
def test_table2_components_change_the_values(promote, theta):
    """Baseline: matching and box targets on the initial anchors, no APM terms, no theta rule
    (the high-CE anchors 4, 5 are mined); APM_C: the theta rule on the initial matching; APM_R:
    promoted anchors without the theta rule."""
    got = golden.training_losses(
        padet(promote=promote, theta=theta),
        train_flat(promote, theta),
        [golden.gt_instances([GT], [0])],
    )
    expected, _ = hand_losses(promote=promote, theta=theta)
    assert_losses(got, expected)
    assert got["loss_padet_cls"] != pytest.approx(hand_losses()[0]["loss_padet_cls"], rel=1e-3)


# ---------------------------------------------------------------- inference (Sec. 2.4)
NAN = [float("nan")] * 4
TEST_APM_REG = [ZERO, [0.0, 0.0, LOG_HALF, LOG_HALF]] + [ZERO] * 5 + [NAN]
TEST_APM_CLS = [0.0, 0.0, -6.0, 0.0, 0.0, 0.0, 0.0, 0.0]
TEST_CLS = [
    [2.0, -10.0, 0.0],
    [3.0, -10.0, 0.0],
    [-10.0, 3.5, 0.0],  # class 1, but its APM score is below theta
    [-10.0, 4.0, 0.0],
] + [[-10.0, -10.0, 5.0]] * 4
TEST_REG = [[0.0, 0.0, 0.0, 5 * math.log(1.25)]] + [ZERO] * 7  # anchor 0 20 px tall


def softmax(logits, c):
    return math.exp(logits[c]) / sum(math.exp(v) for v in logits)


def inference_flat(promote=True, theta=0.01):
    return head_outputs(TEST_CLS, TEST_REG, TEST_APM_CLS, TEST_APM_REG, promote, theta)


IOU_0_1 = 256.0 / 288.0  # of anchor 0's box [0, 0, 16, 18] and anchor 1's [0, 0, 16, 16]


@pytest.mark.parametrize(
    "theta, soft_nms, decay",
    [
        (0.01, {}, 1 - IOU_0_1),
        (0.5, {}, 1 - IOU_0_1),
        (0.01, {"iou_threshold": 0.9}, 1.0),
        (0.01, {"method": "gaussian", "sigma": 0.5}, math.exp(-(IOU_0_1**2) / 0.5)),
    ],
    ids=["default", "theta_at_the_apm_score", "linear_nt_0.9", "gaussian"],
)
def test_inference_decodes_promoted_anchors_gates_by_theta_and_soft_nms_decays(
    theta, soft_nms, decay
):
    """Anchor 1 is decoded from its promoted anchor [0, 0, 16, 16] (from the initial one it would
    be [0, 0, 24, 24]); anchor 0's box [0, 0, 16, 18] overlaps it with IoU 8/9 > 0.5, so a hard
    NMS would drop it, linear soft-NMS (N_t 0.3) keeps it at s x (1 - 8/9), with N_t 0.9 it is
    untouched, Gaussian soft-NMS keeps it at s x exp(-IoU^2 / sigma); anchor 2 (APM score
    sigmoid(-6) < theta) is dropped, the others' APM score sigmoid(0) = 0.5 passes a theta of 0.5
    (an anchor is dropped only *below* theta); anchor 3 is class 1 and untouched. Anchor 7's APM
    deltas are NaN: that anchor alone keeps its initial box."""
    boxes = golden.oracle_decode(
        W, golden.oracle_decode(W, golden.ANCHORS_16_32[:2], TEST_APM_REG[:2]), TEST_REG[:2]
    ).clamp(0, 32)
    torch.testing.assert_close(boxes[:2], torch.tensor([[0, 0, 16, 18], [0, 0, 16, 16]]).float())
    got = golden.detections(padet(theta=theta, soft_nms=soft_nms), inference_flat())[0]
    golden.assert_detections(
        got,
        [
            ([8, 0, 32, 24], softmax(TEST_CLS[3], 1), 1),
            ([0, 0, 16, 16], softmax(TEST_CLS[1], 0), 0),
            ([0, 0, 16, 18], softmax(TEST_CLS[0], 0) * decay, 0),
        ],
    )


def test_ltrb_coder_scales_the_apm_deltas_by_the_anchor_stride():
    """LTRBBoxCoder: (l, t, r, b) from the anchor centre / stride 16. The APM target of anchor 0
    toward the GT is (8, 8, 8, 8) / 16; at test time the APM deltas (0.25, 0.25, 0.75, 0.75) move
    every anchor's centre by (+4, +4) px and detection deltas of 0.5 make the 16 px square around
    it (anchor 0's box, a copy of anchor 1's, decays to 0)."""
    model = padet(box_coder=LTRBBoxCoder())
    apm_reg = [[0.5, 0.5, 0.5, 1.0]] + [[0.5] * 4] * 7
    flat = head_outputs(DET_CLS, DET_REG, APM_CLS, apm_reg, True, 0.01)
    got = golden.training_losses(model, flat, [golden.gt_instances([GT], [0])])
    assert got["loss_padet_apm_box"] == pytest.approx(
        golden.smooth_l1(0.5, 1.0) / golden.ema_first(1)
    )
    shift = [[0.25, 0.25, 0.75, 0.75]] * 8
    flat = head_outputs(TEST_CLS, [[0.5] * 4] * 8, TEST_APM_CLS, shift, True, 0.01)
    golden.assert_detections(
        golden.detections(model, flat)[0],
        [
            ([20, 4, 32, 20], softmax(TEST_CLS[3], 1), 1),
            ([4, 4, 20, 20], softmax(TEST_CLS[1], 0), 0),
        ],
    )


@pytest.mark.parametrize("frame", [{}, {"height": 40, "width": 60}], ids=["own", "given"])
def test_the_test_warp_keeps_the_output_frame(frame):
    """An 8 x 12 image is warped to test_input_size (16, 24); detections are returned in the given
    "height" / "width" frame, else the image's own; an image of that size is passed as it is."""
    model = padet(test_input_size=(16, 24))
    image = torch.arange(3 * 8 * 12.0).view(3, 8, 12)
    got = model._warp_to_test_input_size({"image": image, **frame})
    warped = F.interpolate(
        image[None], size=(16, 24), mode="bilinear", align_corners=False, antialias=True
    )[0]
    torch.testing.assert_close(got["image"], warped)
    assert (got["height"], got["width"]) == (frame.get("height", 8), frame.get("width", 12))
    item = {"image": warped, **frame}
    assert model._warp_to_test_input_size(item) is item


def test_baseline_inference_decodes_the_initial_anchors_without_a_gate():
    """use_apm=False: anchor 1's box is [0, 0, 24, 24] (IoU 1/2 with anchor 0's), anchor 2 is
    kept and decayed by anchor 3 (IoU 4/9 >= 0.3)."""
    got = golden.detections(padet(promote=False, theta=None), inference_flat(False, None))[0]
    golden.assert_detections(
        got,
        [
            ([8, 0, 32, 24], softmax(TEST_CLS[3], 1), 1),
            ([0, 0, 24, 24], softmax(TEST_CLS[1], 0), 0),
            ([16, 0, 32, 16], softmax(TEST_CLS[2], 1) * (1 - 4 / 9), 1),
            ([0, 0, 16, 18], softmax(TEST_CLS[0], 0) * 0.5, 0),
        ],
    )


# ---------------------------------------------------------------- FAM offsets (Table 1)
# APM deltas of the A = 2 anchors at one location: (dx, dy, dw, dh) = (1, 2, 3, 4), (5, 6, 7, 8)
X_L, X_S = [1.0, 2.0, 5.0, 6.0], [3.0, 4.0, 7.0, 8.0]


def fam(mode):
    module = FeatureAlignment(1, 2, mode=mode)
    with torch.no_grad():
        if hasattr(module, "f_loc"):  # F picks dx of anchor 0 and dy of anchor 1
            module.f_loc.weight.copy_(
                torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]])[..., None, None]
            )
        if hasattr(module, "g_shape"):  # G_j = (j + 1) x X_s[j mod 4]
            w = torch.zeros(18, 4)
            for j in range(18):
                w[j, j % 4] = j + 1.0
            module.g_shape.weight.copy_(w[..., None, None])
        if hasattr(module, "h_both"):  # H_j = [X_l; X_s][j mod 8] - j
            w = torch.zeros(18, 8)
            for j in range(18):
                w[j, j % 8] = 1.0
            module.h_both.weight.copy_(w[..., None, None])
            module.h_both.bias.copy_(-torch.arange(18.0))
        if hasattr(module, "offset_conv"):
            module.offset_conv.weight.fill_(0.0)
            module.offset_conv.weight[:, 0, 1, 1] = torch.arange(18.0)
            module.offset_conv.bias.fill_(0.5)
    return module


@pytest.mark.parametrize(
    "mode", ["none", "implicit", "location", "shape", "concat", "disentangled"]
)
def test_fam_offsets_of_every_mode(mode):
    """Per tap k, channels (2k, 2k + 1) = (dy, dx): location F(X_l) = (1, 6) on every tap; shape
    G(X_s); concat H([X_l; X_s]); disentangled F(X_l) + G(X_s); implicit a 3x3 conv of the
    features (here 2 x w_center + 0.5)."""
    apm_reg = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).view(1, 8, 1, 1)
    x = torch.full((1, 1, 1, 1), 2.0)
    f = [X_L[0], X_L[3]]
    g = [(j + 1) * X_S[j % 4] for j in range(18)]
    h = [(X_L + X_S)[j % 8] - j for j in range(18)]
    expected = {
        "none": [0.0] * 18,
        "implicit": [2.0 * j + 0.5 for j in range(18)],
        "location": [f[j % 2] for j in range(18)],
        "shape": g,
        "concat": h,
        "disentangled": [f[j % 2] + g[j] for j in range(18)],
    }[mode]
    got = fam(mode).offsets(x, apm_reg if mode not in ("none", "implicit") else None)
    torch.testing.assert_close(got.view(18), torch.tensor(expected))


def test_the_logged_assignment_statistics():
    """Initial stage: anchor 0 positive, the other 7 background; promoted stage: 2 positive, 4
    background and 2 ignored by theta (of 6 non-positive); the trained counts after mining (det
    ratio 1, APM ratio 3)."""
    got = golden.logged_scalars(padet(), train_flat(), [golden.gt_instances([GT], [0])])
    expected = {
        "num_pos_anchors": 2.0,
        "num_pos_per_gt": 2.0,
        "padet/num_pos_initial": 1.0,
        "padet/neg_per_pos_initial": 7.0,
        "padet/num_pos_promoted": 2.0,
        "padet/neg_per_pos_promoted": 2.0,
        "padet/theta_ignored": 2.0,
        "padet/theta_ignored_share": 2 / 6,
        "padet/trained_pos_det": 2.0,
        "padet/trained_neg_per_pos_det": 1.0,
        "padet/trained_pos_apm": 1.0,
        "padet/trained_neg_per_pos_apm": 3.0,
        "padet/loss_normalizer": golden.ema_first(2),
        "padet/loss_normalizer_apm": golden.ema_first(1),
    }
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key


# two images of the 16 px anchors: image 0 has GTs on anchors 0-2 (anchor 3 is background, its APM
# score sigmoid(-6) below theta), image 1 one GT on every anchor
FOUR_GTS = [golden.gt_instances(golden.ANCHORS_16_32[0:6:2], [0, 1, 0])]
FOUR_GTS.append(golden.gt_instances(golden.ANCHORS_16_32[0::2], [0, 1, 0, 1]))
FOUR_FLAT = {
    "cls": torch.zeros(2, 4, K + 1),
    "reg": torch.zeros(2, 4, 4),
    "apm_cls": torch.tensor([[0.0, 0.0, 0.0, -6.0], [0.0] * 4])[..., None],
}
SEVEN_POSITIVES = {
    "num_pos_anchors": 3.5,
    "num_pos_per_gt": 1.0,
    "padet/num_pos_promoted": 3.5,
    "padet/trained_pos_det": 3.5,
    "padet/loss_normalizer": golden.ema_first(7),
}


@pytest.mark.parametrize("theta", [0.01, None], ids=["apm_c", "baseline_plain_assigner"])
def test_the_logged_statistics_are_per_image_and_of_the_whole_batch(theta):
    """7 positives over 2 images; the 1 negative (image 0's anchor 3) is the one theta ignores
    (its share of the promoted matching's negatives: 1 / (1 + 0)). Without APM (a plain max-IoU
    assigner: no "initial" stage) the promoted statistics are still logged."""
    band = dict(thresholds=[0.3, 0.5], labels=[0, -1, 1])
    plain = None if theta is not None else MaxIoUAssigner(**band)
    model = padet(promote=False, theta=theta, sizes=(16,), assigner=plain)
    flat = dict(FOUR_FLAT) if theta is not None else {k: FOUR_FLAT[k] for k in ("cls", "reg")}
    got = golden.logged_scalars(model, flat, FOUR_GTS)
    expected = dict(SEVEN_POSITIVES)
    if theta is None:
        expected.update(
            {"padet/neg_per_pos_promoted": 1 / 7, "padet/trained_neg_per_pos_det": 1 / 7}
        )
    else:
        expected.update(
            {
                "padet/num_pos_initial": 3.5,
                "padet/neg_per_pos_initial": 1 / 7,
                "padet/neg_per_pos_promoted": 0.0,
                "padet/theta_ignored": 0.5,
                "padet/theta_ignored_share": 1.0,
                "padet/trained_neg_per_pos_det": 0.0,
                "padet/trained_pos_apm": 3.5,
                "padet/trained_neg_per_pos_apm": 1 / 7,
                "padet/loss_normalizer_apm": golden.ema_first(7),
            }
        )
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key


def test_an_apm_component_mismatch_is_named():
    """APM_C on without the head's scoring branch; the assigner's promoted stage without
    promotion while the model promotes."""
    message = (
        r"^theta=0.01 needs the APM anchor scoring \(APM_C\) branch: the head has no 'apm_cls' "
        r"output \(PADetHead\(apm_scoring=..., apm_adjustment=...\)\)$"
    )
    with pytest.raises(ValueError, match=message):
        padet(branches=(False, True))
    message = (
        r"^assigner stage 'promoted' \(promote=False, theta=0.01\) disagrees with the model "
        r"\(promote=True, theta=0.01\): training and test would use different APM components$"
    )
    with pytest.raises(ValueError, match=message):
        padet(stage=(False, 0.01))


def test_the_apm_losses_need_an_initial_stage():
    """Checked at construction and again at the loss (an assigner swapped in afterwards)."""
    message = r"^PADet's APM losses need a StagedAssigner with an 'initial' stage$"
    model = padet()
    kwargs = dict(
        **golden.detector_kwargs(
            model.head,
            box_coder=DeltaBoxCoder(weights=W),
            assigner=MaxIoUAssigner(thresholds=[0.3, 0.5], labels=[0, -1, 1]),
            num_classes=K,
            use_apm=True,
            promote=True,
            theta=0.01,
        )
    )
    with pytest.raises(ValueError, match=message):
        PADet(**kwargs)
    model.assigner = MaxIoUAssigner(thresholds=[0.3, 0.5], labels=[0, -1, 1])
    with pytest.raises(ValueError, match=message):
        golden.training_losses(model, train_flat(), [golden.gt_instances([GT], [0])])
