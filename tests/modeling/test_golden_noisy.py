"""Golden values of Noisy Anchors (Li et al., CVPR 2020) on the tiny fixed case of
``golden_case`` (one 16 px anchor per location), for the RetinaNet detector and the RPN.

Hand computation of Algorithm 1: A_pos = per GT the top-N anchors by IoU (IoU > 0, conflicts to
the highest IoU), loc_a = IoU of the decoded box (Detectron2's ``apply_deltas``) with the GT,
cls_c = p(GT's class), c = alpha loc_a + (1 - alpha) cls_c (Eq. 3), r = (alpha f(loc_a) +
(1 - alpha) f(cls_c))^gamma, f(x) = 1 / (1 - min(x, 0.99)), mean 1 over A_pos (Eq. 4); the losses
of Eq. 5-6: the focal BCE with t -> c times r on A_pos, plain focal on A_neg, smooth-L1 times r,
both / EMA(P). Switches by value: Table 3's SL / SR, Table 4's N and gamma, the three loss
normalisers. The RPN: BCE(p, c) x r and L1 x r over the sampled anchors / (256 x N).

The case: K = 2, GT0 = [2, 2, 18, 14] (class 1), GT1 = [17, 15, 31, 31] (class 0); with N = 2,
A_pos = {anchor 0: GT0, anchor 1: GT0 (IoU 0.057 beats GT1's 0.030), anchor 3: GT1}.
"""

import pytest
import torch
from torchvision.ops import box_iou, nms

from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.utils.events import EventStorage

from semianchor.modeling.assigners import AssignResult, CleanlinessAssigner
from semianchor.modeling.box_coder import DeltaBoxCoder
from semianchor.modeling.heads.dense_head import HeadOutput
from semianchor.modeling.meta_arch import NoisyAnchorRetinaNet
from semianchor.modeling.proposal_generator import NoisyAnchorRPN

from . import golden_case as golden

K = 2
W = (1.0, 1.0, 1.0, 1.0)
ANCHORS = [[0, 0, 16, 16], [16, 0, 32, 16], [0, 16, 16, 32], [16, 16, 32, 32]]
GTS = [[2, 2, 18, 14], [17, 15, 31, 31]]
GT_CLASSES = [1, 0]
CLS = [[-1.0, 0.8], [-2.0, -1.5], [-0.5, -3.0], [1.2, -0.7]]
REG = [[0.05, -0.03, 0.1, -0.2], [-0.3, 0.1, 0.05, 0.0], [0.0] * 4, [-0.1, 0.04, -0.3, 0.2]]
ALPHA, GAMMA_FL, BETA = 0.25, 2.0, 0.1  # focal (alpha, gamma), smooth-L1 beta


def iou_matrix():
    return box_iou(torch.tensor(ANCHORS).float(), torch.tensor(GTS).float())  # (4, 2)


def top_n(n):
    """{anchor: gt} of Algorithm 1, lines 2-6."""
    iou = iou_matrix()
    claims = {}
    for g in range(len(GTS)):
        ranked = sorted(range(4), key=lambda j: (-float(iou[j, g]), j))
        for j in [j for j in ranked if float(iou[j, g]) > 0][:n]:
            if j not in claims or float(iou[j, g]) > float(iou[j, claims[j]]):
                claims[j] = g
    return dict(sorted(claims.items()))


def cleanliness(positives, p_cls, alpha=0.75, gamma=1.0):
    """c and the normalised r of every positive (Eq. 3-4), from class probabilities p_cls[j]."""
    decoded = golden.oracle_decode(W, ANCHORS, REG)
    c, r = {}, {}
    for j, g in positives.items():
        loc_a = float(box_iou(decoded[j : j + 1], torch.tensor([GTS[g]]).float()))
        cls_c = p_cls[j][GT_CLASSES[g]]
        c[j] = alpha * loc_a + (1 - alpha) * cls_c
        f = lambda x: 1.0 / (1.0 - min(x, 0.99))  # noqa: E731
        r[j] = (alpha * f(loc_a) + (1 - alpha) * f(cls_c)) ** gamma
    mean = sum(r.values()) / max(len(r), 1)
    return c, {j: v / mean for j, v in r.items()}


def soft_focal(x, t, gamma=GAMMA_FL):
    """Eq. 1 with t -> c: -t alpha (1 - p)^gamma log p - (1 - t)(1 - alpha) p^gamma log(1 - p)."""
    p = golden.sigmoid(x)
    return t * ALPHA * (1 - p) ** gamma * golden.softplus(-x) + (1 - t) * (
        1 - ALPHA
    ) * p**gamma * (golden.softplus(x))


def hand_losses(
    topn=2,
    gamma=1.0,
    soft_labels=True,
    reweight=True,
    normalizer="positives",
    reg=REG,
    fl_gamma=GAMMA_FL,
):
    positives = top_n(topn)
    p_cls = [[golden.sigmoid(x) for x in row] for row in CLS]
    c, r = cleanliness(positives, p_cls, gamma=gamma)
    if not reweight:
        r = {j: 1.0 for j in positives}
    cls = 0.0
    for j in range(4):
        for k in range(K):
            if j in positives:
                t = (c[j] if soft_labels else 1.0) if k == GT_CLASSES[positives[j]] else 0.0
                cls += r[j] * soft_focal(CLS[j][k], t, fl_gamma)
            else:
                cls += soft_focal(CLS[j][k], 0.0, fl_gamma)
    box = 0.0
    for j, g in positives.items():
        target = golden.oracle_encode(W, ANCHORS[j], GTS[g])[0].tolist()
        box += r[j] * sum(golden.smooth_l1(d - t, BETA) for d, t in zip(reg[j], target))
    if normalizer == "positives":
        count = len(positives)
    elif normalizer == "soft_targets":
        count = sum(c.values()) if soft_labels else len(positives)
    else:  # RetinaNet's matcher {0.4, 0.5} with low-quality matches, on the same anchors
        _, labels = Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)(iou_matrix().T)
        count = int((labels == 1).sum())
    return {
        "loss_noisy_cls": cls / golden.ema_first(count),
        "loss_noisy_box": box / golden.ema_first(count),
    }


def noisy(assigner=None, **kw):
    outputs = {"cls": HeadOutput(K), "reg": HeadOutput(4)}
    return NoisyAnchorRetinaNet(
        **golden.detector_kwargs(
            golden.FixedHead(outputs, 1),
            golden.anchor_generator(sizes=((16,),)),
            box_coder=DeltaBoxCoder(weights=W),
            assigner=CleanlinessAssigner(**{"topn": 2, **(assigner or {})}),
            num_classes=K,
            box_loss_type="smooth_l1",
            smooth_l1_beta=BETA,
            test_nms_thresh=0.5,
            **kw,
        )
    )


def flat(cls=CLS, reg=REG):
    return {"cls": torch.tensor([cls]), "reg": torch.tensor([reg])}


def assert_losses(got, expected):
    assert set(got) == set(expected)
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-5), (k, got, expected)


def test_the_case_is_what_the_docstring_says():
    assert top_n(2) == {0: 0, 1: 0, 3: 1}
    assert top_n(1) == {0: 0, 3: 1}


def test_every_loss_term_and_its_normaliser():
    got = golden.training_losses(noisy(), flat(), [golden.gt_instances(GTS, GT_CLASSES)])
    assert_losses(got, hand_losses())


@pytest.mark.parametrize(
    "switch",
    [
        dict(soft_labels=False),
        dict(reweight=False),
        dict(soft_labels=False, reweight=False),
        dict(topn=1),
        dict(gamma=0.0),
        dict(gamma=2.0),
    ],
    ids=["SR_only", "SL_only", "binary_top_n", "topn_1", "gamma_0", "gamma_2"],
)
def test_table3_and_table4_switches(switch):
    got = golden.training_losses(
        noisy(assigner=switch), flat(), [golden.gt_instances(GTS, GT_CLASSES)]
    )
    expected = hand_losses(**switch)
    assert_losses(got, expected)
    default = hand_losses()
    assert any(expected[k] != pytest.approx(default[k], rel=1e-4) for k in expected)


def test_the_focal_gamma_reaches_eq1():
    """Eq. 1's focusing parameter at 1.5 instead of RetinaNet's 2, on positives and negatives."""
    got = golden.training_losses(
        noisy(focal_loss_gamma=1.5), flat(), [golden.gt_instances(GTS, GT_CLASSES)]
    )
    assert_losses(got, hand_losses(fl_gamma=1.5))


@pytest.mark.parametrize(
    "normalizer, soft_labels",
    [("soft_targets", True), ("retinanet_matched", True), ("soft_targets", False)],
)
def test_loss_normalizer_choices(normalizer, soft_labels):
    """soft_targets: EMA(sum of c over A_pos), EMA(|A_pos| = 3) when the assigner gives binary
    labels (Table 3's SR only: c = 1); retinanet_matched: EMA(2), the positives of Detectron2's
    Matcher([0.4, 0.5]) on the same anchors."""
    got = golden.training_losses(
        noisy(assigner=dict(soft_labels=soft_labels), normalizer_type=normalizer),
        flat(),
        [golden.gt_instances(GTS, GT_CLASSES)],
    )
    assert_losses(got, hand_losses(normalizer=normalizer, soft_labels=soft_labels))


@pytest.mark.parametrize("normalizer", ["positives", "soft_targets"])
def test_a_named_normaliser_is_its_own_ema(normalizer):
    """A second result of the step normalised under its own name (as a later assignment stage
    is) gets its own EMA, 0.9 x 100 + 0.1 x its own count, next to the default one's. K = 2:
    labels 0, 1 positive, 2 background."""
    model = noisy(normalizer_type=normalizer)
    first = AssignResult(
        matched_gt=torch.tensor([[0, 1, 0, -1]]),
        labels=torch.tensor([[1, 0, 1, 2]]),
        soft_targets=torch.tensor([[0.5, 0.75, 1.0, 0.0]]),
    )
    second = AssignResult(
        matched_gt=torch.tensor([[0, 0, -1, -1]]),
        labels=torch.tensor([[1, 1, 2, 2]]),
        soft_targets=torch.tensor([[1.0, 1.0, 0.0, 0.0]]),
    )
    counts = {"positives": (3.0, 2.0), "soft_targets": (2.25, 2.0)}[normalizer]
    assert model.positives_normalizer(first) == pytest.approx(golden.ema_first(counts[0]))
    named = model.positives_normalizer(second, name="loss_normalizer_stage2")
    assert named == pytest.approx(golden.ema_first(counts[1]))
    assert model._logged_normalizers == pytest.approx(
        {"loss_normalizer": golden.ema_first(counts[0]), "loss_normalizer_stage2": named}
    )


def test_inference_is_p_cls_with_torchvision_nms():
    """Score p_cls gated at 0.05; anchors 0 and 1 decoded onto overlapping boxes of class 1
    (IoU > 0.5): the same survivors as torchvision's nms."""
    cls = [[-8.0, 2.0], [-8.0, 1.0], [-8.0, -8.0], [0.5, -8.0]]
    reg = [[0.0] * 4, [-0.8, 0.0, 0.0, 0.0], [0.0] * 4, [0.0] * 4]  # anchor 1 shifted 12.8 px
    boxes = golden.oracle_decode(W, ANCHORS, reg).clamp(0, 32)
    scores = torch.tensor([golden.sigmoid(2.0), golden.sigmoid(1.0)])
    keep = nms(boxes[:2], scores, 0.5)
    assert keep.tolist() == [0]
    got = golden.detections(noisy(), flat(cls, reg))[0]
    golden.assert_detections(
        got,
        [(boxes[3].tolist(), golden.sigmoid(0.5), 0), (boxes[0].tolist(), golden.sigmoid(2.0), 1)],
    )


# ---------------------------------------------------------------- RPN (Tables 5-6)
def rpn(assigner=None):
    return NoisyAnchorRPN(
        in_features=["p0"],
        head=torch.nn.Identity(),
        anchor_generator=DefaultAnchorGenerator(
            sizes=[[16]], aspect_ratios=[[1.0]], strides=[16], offset=0.5
        ),
        box2box_transform=Box2BoxTransform(weights=W),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(100, 100),
        post_nms_topk=(10, 10),
        smooth_l1_beta=0.0,
        assigner=CleanlinessAssigner(**{"topn": 2, **(assigner or {})}),
    )


OBJ = [0.4, -1.2, -0.3, 1.5]


def rpn_losses(model):
    anchors = model.anchor_generator([torch.zeros(1, 1, 2, 2)])
    gts = [golden.gt_instances(GTS, GT_CLASSES)]
    inputs, gts = model.label_and_sample_anchors(anchors, gts)
    with EventStorage():
        losses = model.losses(anchors, [torch.tensor([OBJ])], inputs, [torch.tensor([REG])], gts)
    return {k: float(v) for k, v in losses.items()}


@pytest.mark.parametrize("reweight", [True, False])
def test_rpn_losses(reweight):
    """Objectness as one class: c = 0.75 loc_a + 0.25 sigmoid(objectness); every anchor is
    sampled (4 < 256); both losses / (256 x 1 image); L1 (beta 0) box loss."""
    positives = top_n(2)
    p_obj = [[golden.sigmoid(x)] * K for x in OBJ]  # cls_c: the objectness, whatever the GT's class
    c, r = cleanliness(positives, p_obj)
    if not reweight:
        r = {j: 1.0 for j in positives}
    cls = 0.0
    for j, x in enumerate(OBJ):
        t = c.get(j, 0.0)
        cls += r.get(j, 1.0) * (t * golden.softplus(-x) + (1 - t) * golden.softplus(x))
    box = 0.0
    for j, g in positives.items():
        target = golden.oracle_encode(W, ANCHORS[j], GTS[g])[0].tolist()
        box += r[j] * sum(abs(d - t) for d, t in zip(REG[j], target))
    got = rpn_losses(rpn(dict(reweight=reweight)))
    assert got["loss_rpn_cls"] == pytest.approx(cls / 256, rel=1e-5)
    assert got["loss_rpn_loc"] == pytest.approx(box / 256, rel=1e-5)


def test_the_logged_assignment_statistics():
    """3 positives for 2 GTs; the cleanliness statistics of the positives, the largest weight."""
    got = golden.logged_scalars(noisy(), flat(), [golden.gt_instances(GTS, GT_CLASSES)])
    assert set(got) == {
        "num_pos_anchors",
        "num_pos_per_gt",
        "noisy/mean_cleanliness",
        "noisy/mean_loc_a",
        "noisy/mean_cls_c",
        "noisy/max_weight",
        "noisy/loss_normalizer",
    }
    assert got["num_pos_anchors"] == 3.0 and got["num_pos_per_gt"] == 1.5
    assert got["noisy/max_weight"] > 1.0 and 0 < got["noisy/mean_cleanliness"] < 1
