"""Noisy Anchors (Li et al., CVPR 2020, Sec. 4, Eq. 3-4, Algorithm 1): hand-computed values of
the cleanliness assigner's prediction terms (loc_a against the *matched* GT, decoded with the
detector's own box coder; cls_c a probability), its paper defaults and its argument checks.

The case (one image, stride 8, K = 3): anchors a0 = [0,0,10,10], a1 = [0,0,10,20],
a2 = [0,0,20,20], a3 = [30,30,40,40]; GT A = [0,0,10,10] (class 2), GT B = [10,0,20,10]
(class 1). IoU before regression: A 1, 0.5, 0.25, 0; B 0, 0, 100/400 = 0.25, 0. With N = 1
(Algorithm 1, lines 2-6): A_pos = {a0: A, a2: B}.
"""

import math

import pytest
import torch

from semianchor.modeling.assigners import CleanlinessAssigner
from semianchor.modeling.box_coder import DeltaBoxCoder, LTRBBoxCoder

from .conftest import one_level_inputs

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/modeling/conftest.py

K = 3
ANCHORS = torch.tensor(
    [[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 20, 20], [30, 30, 40, 40]], dtype=torch.float32
)
GTS = torch.tensor([[[0, 0, 10, 10], [10, 0, 20, 10]]], dtype=torch.float32)
GT_CLASSES = torch.tensor([[2, 1]])
MATCHED = [0, -1, 1, -1]
LABELS = [2, K, 1, K]


def case(regression, score_a0=0.6, score_a2=0.2, coder=None):
    """The case above; ``regression`` (4, 4) per anchor; p(GT class) of a0 and a2 given, 0.5
    for every other (anchor, class)."""
    scores = torch.full((1, 4, K), 0.5)
    scores[0, 0, 2], scores[0, 2, 1] = score_a0, score_a2
    inputs = one_level_inputs(
        ANCHORS,
        GTS,
        GT_CLASSES,
        torch.tensor([2]),
        K,
        pred_scores=scores,
        pred_regression=torch.tensor(regression, dtype=torch.float32)[None],
    )
    if coder is not None:
        inputs.box_coder = coder
    return inputs


# a0 decoded to [7.5,0,17.5,10] (centre x 5 -> 12.5, same size); a2 decoded to itself. In the
# units of each coder (anchor strides 8): deltas dx = 7.5 / 10 = 0.75 times the coder's weight;
# ltrb distances from a0's centre (5, 5): (5 - 7.5, 5, 17.5 - 5, 5) / 8, a2's: (10,) * 4 / 8.
CODERS = {
    "deltas_unit": (None, [[0.75, 0, 0, 0], [0] * 4, [0] * 4, [0] * 4]),
    "deltas_10_10_5_5": (
        DeltaBoxCoder(weights=(10.0, 10.0, 5.0, 5.0)),
        [[7.5, 0, 0, 0], [0] * 4, [0] * 4, [0] * 4],
    ),
    "ltrb_stride_8": (
        LTRBBoxCoder(),
        [[-0.3125, 0.625, 1.5625, 0.625], [0.625] * 4, [1.25] * 4, [0.625] * 4],
    ),
}


@pytest.mark.parametrize("name", sorted(CODERS))
def test_loc_a_is_iou_of_decoded_box_with_matched_gt(name):
    coder, regression = CODERS[name]
    res = CleanlinessAssigner(topn=1, alpha=0.75, gamma=1.0)(case(regression, coder=coder))
    assert res.matched_gt[0].tolist() == MATCHED and res.labels[0].tolist() == LABELS
    # a0's box [7.5,0,17.5,10] is matched to A: IoU 2.5 * 10 / (100 + 100 - 25) = 1/7, although
    # it overlaps B more (7.5 * 10 / (100 + 100 - 75) = 0.6). a2 = [0,0,20,20] vs B: 0.25.
    loc = torch.tensor([[1 / 7, 0.0, 0.25, 0.0]])
    torch.testing.assert_close(res.extras["loc_a"], loc)
    torch.testing.assert_close(res.extras["cls_c"], torch.tensor([[0.6, 0.0, 0.2, 0.0]]))
    # Eq. 3: c = 0.75 loc_a + 0.25 cls_c -> a0 0.75 / 7 + 0.15, a2 0.1875 + 0.05
    c = torch.tensor([[0.75 / 7 + 0.15, 0.0, 0.2375, 0.0]])
    torch.testing.assert_close(res.soft_targets, c)
    # Eq. 4: f(1/7) = 7/6, f(0.6) = 2.5 -> r0 = 0.875 + 0.625 = 1.5; f(0.25) = 4/3, f(0.2) =
    # 1.25 -> r2 = 1 + 0.3125 = 1.3125; mean over A_pos 1.40625; A_neg: 1.
    r = torch.tensor([[1.5 / 1.40625, 1.0, 1.3125 / 1.40625, 1.0]])
    torch.testing.assert_close(res.weights, r)


@pytest.mark.parametrize(
    "score_a0, score_a2, cls_c",
    [(1.5, -0.5, [1.0, 0.0]), (1.0 + 2**-10, -(2**-10), [1.0, 0.0]), (3.0, 0.25, [1.0, 0.25])],
)
def test_cls_c_is_a_probability(score_a0, score_a2, cls_c):
    # scores outside [0, 1] (e.g. a head that passes logits) are clamped to a probability
    res = CleanlinessAssigner(topn=1)(case([[0] * 4] * 4, score_a0, score_a2))
    torch.testing.assert_close(res.extras["cls_c"][0, [0, 2]], torch.tensor(cls_c))
    # zero regression: loc_a = IoU before regression = 1 (a0), 0.25 (a2)
    expected_c = [0.75 + 0.25 * cls_c[0], 0.1875 + 0.25 * cls_c[1]]
    torch.testing.assert_close(res.soft_targets[0, [0, 2]], torch.tensor(expected_c))
    assert 0.0 <= float(res.soft_targets.min()) and float(res.soft_targets.max()) <= 1.0


def test_defaults_are_the_papers():
    # N = 50 (Algorithm 1), alpha = 0.75 (Table 4c), gamma = 1 (Table 4b), SL and SR on (Table 3)
    a = CleanlinessAssigner()
    assert (a.topn, a.alpha, a.gamma, a.eps) == (50, 0.75, 1.0, 0.01)
    assert a.soft_labels is True and a.reweight is True


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"topn": 0}, r"^topn must be >= 1, got 0$"),
        ({"alpha": 1.5}, r"^alpha must be in \[0, 1\], got 1.5$"),
        ({"alpha": -0.1}, r"^alpha must be in \[0, 1\], got -0.1$"),
        ({"gamma": -1.0}, r"^gamma must be >= 0, got -1.0$"),
        ({"eps": 0.0}, r"^eps must be in \(0, 1\), got 0.0$"),
        ({"eps": 1.0}, r"^eps must be in \(0, 1\), got 1.0$"),
        ({"eps": 1.5}, r"^eps must be in \(0, 1\), got 1.5$"),
    ],
)
def test_bad_arguments_name_the_argument(kw, words):
    with pytest.raises(ValueError, match=words):
        CleanlinessAssigner(**kw)


def test_boundary_arguments_are_accepted():
    a = CleanlinessAssigner(topn=1, alpha=0.0, gamma=0.0, eps=math.nextafter(1.0, 0.0))
    assert (a.topn, a.alpha, a.gamma) == (1, 0.0, 0.0)
    assert CleanlinessAssigner(alpha=1.0).alpha == 1.0


def test_missing_box_coder_is_an_error():
    inputs = case([[0] * 4] * 4)
    inputs.box_coder = None
    words = r"^CleanlinessAssigner needs the detector's box_coder in AssignInputs$"
    with pytest.raises(ValueError, match=words):
        CleanlinessAssigner(topn=1)(inputs)
