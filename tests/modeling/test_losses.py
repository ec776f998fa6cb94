"""The shared loss functions against oracles that are not ours: fvcore's ``sigmoid_focal_loss``,
torchvision's ``box_iou`` / ``generalized_box_iou``, PyTorch's ``smooth_l1_loss`` and
``binary_cross_entropy_with_logits``, and hand values; every reduction and default."""

import math

import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import sigmoid_focal_loss
from torchvision.ops import box_iou, generalized_box_iou

from semianchor.modeling.losses import (
    centerness_targets,
    cleanliness_focal_loss,
    focal_loss,
    hard_negative_mask,
    iou_loss,
    pairwise_aligned_iou,
    quality_focal_loss,
    smooth_l1_loss,
    smoothed_focal_loss,
)

G = torch.Generator().manual_seed(0)
LOGITS = torch.randn(40, 3, generator=G) * 3
BINARY = (torch.rand(40, 3, generator=G) > 0.7).float()
SOFT = torch.rand(40, 3, generator=G)


@pytest.mark.parametrize("alpha", [0.25, 0.0, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_focal_loss_is_fvcores_on_binary_targets(alpha, gamma, reduction):
    got = focal_loss(LOGITS, BINARY, alpha, gamma, reduction=reduction)
    want = sigmoid_focal_loss(LOGITS, BINARY, alpha, gamma, reduction=reduction)
    torch.testing.assert_close(got, want)


def test_focal_loss_defaults_are_retinanets():
    """alpha 0.25, gamma 2, no reduction (Lin et al. 2017, Sec. 5.1)."""
    torch.testing.assert_close(
        focal_loss(LOGITS, BINARY), sigmoid_focal_loss(LOGITS, BINARY, 0.25, 2.0, "none")
    )


def test_focal_loss_with_a_soft_target_by_hand():
    """BCE(p, t) |t - p|^gamma (alpha t + (1 - alpha)(1 - t)) at x = 0.5, t = 0.3."""
    x, t = 0.5, 0.3
    p = 1 / (1 + math.exp(-x))
    bce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
    want = bce * abs(t - p) ** 2 * (0.25 * t + 0.75 * (1 - t))
    got = focal_loss(torch.tensor([x]), torch.tensor([t]), 0.25, 2.0)
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_quality_focal_loss_has_no_alpha_and_beta_two_by_default():
    p = torch.sigmoid(LOGITS)
    want = (
        F.binary_cross_entropy_with_logits(LOGITS, SOFT, reduction="none") * (SOFT - p).abs() ** 2
    )
    torch.testing.assert_close(quality_focal_loss(LOGITS, SOFT), want)
    torch.testing.assert_close(quality_focal_loss(LOGITS, SOFT, reduction="sum"), want.sum())
    # beta is the modulating exponent (GFL Eq. 5): beta = 1 weighs BCE by |t - p| itself
    bce = F.binary_cross_entropy_with_logits(LOGITS, SOFT, reduction="none")
    torch.testing.assert_close(quality_focal_loss(LOGITS, SOFT, beta=1.0), bce * (SOFT - p).abs())


def test_cleanliness_focal_loss_by_hand_and_defaults():
    """-c alpha (1 - p)^gamma log p - (1 - c)(1 - alpha) p^gamma log(1 - p); defaults 0.25 / 2."""
    x, c = -0.4, 0.7
    p = 1 / (1 + math.exp(-x))
    want = -c * 0.25 * (1 - p) ** 2 * math.log(p) - (1 - c) * 0.75 * p**2 * math.log(1 - p)
    assert float(cleanliness_focal_loss(torch.tensor([x]), torch.tensor([c]))) == pytest.approx(
        want, rel=1e-6
    )
    no_alpha = -c * (1 - p) ** 2 * math.log(p) - (1 - c) * p**2 * math.log(1 - p)
    got = cleanliness_focal_loss(torch.tensor([x]), torch.tensor([c]), alpha=-1.0)
    assert float(got) == pytest.approx(no_alpha, rel=1e-6)
    zero = cleanliness_focal_loss(torch.tensor([x]), torch.tensor([c]), alpha=0.0)
    assert float(zero) == pytest.approx(-(1 - c) * p**2 * math.log(1 - p), rel=1e-6)


@pytest.mark.parametrize("positive", [True, False])
def test_smoothed_focal_loss_eq3_defaults_and_reductions(positive):
    """SAD Eq. 3 with its defaults alpha 0.25, beta 2."""
    x, mu = torch.tensor([0.3, -1.2]), torch.tensor([0.8, 0.6])
    p = torch.sigmoid(x)
    if positive:
        want = -0.25 * (mu - p).abs() ** 2 * mu * torch.log(p)
    else:
        want = -0.75 * p**2 * torch.log(1 - p)
    pos = torch.full((2,), positive)
    torch.testing.assert_close(smoothed_focal_loss(x, mu, pos), want)
    torch.testing.assert_close(smoothed_focal_loss(x, mu, pos, reduction="mean"), want.mean())


# overlapping, equal, disjoint on both axes, disjoint on x only, on y only, a box thinner than
# 1 px as the prediction and as the target
BOXES_A = torch.tensor(
    [[0.0, 0, 10, 10], [5, 5, 15, 25], [0, 0, 4, 4], [0, 0, 4, 10], [0, 0, 10, 4]]
    + [[0, 0, 0.5, 10], [0, 0, 10, 10]]
)
BOXES_B = torch.tensor(
    [[2.0, 3, 12, 9], [5, 5, 15, 25], [10, 10, 20, 20], [6, 0, 10, 10], [0, 6, 10, 10]]
    + [[0, 0, 10, 10], [0, 0, 10, 0.5]]
)


def test_pairwise_aligned_iou_is_torchvisions_diagonal():
    iou, giou = pairwise_aligned_iou(BOXES_A, BOXES_B)
    torch.testing.assert_close(iou, box_iou(BOXES_A, BOXES_B).diag())
    torch.testing.assert_close(giou, generalized_box_iou(BOXES_A, BOXES_B).diag())


def test_pairwise_aligned_iou_keeps_leading_dimensions():
    """(N, R, 4) pairs, as the batched callers pass them."""
    iou, giou = pairwise_aligned_iou(
        torch.stack([BOXES_A, BOXES_B]), torch.stack([BOXES_B, BOXES_A])
    )
    assert iou.shape == giou.shape == (2, len(BOXES_A))
    for row in (0, 1):
        torch.testing.assert_close(iou[row], box_iou(BOXES_A, BOXES_B).diag())
        torch.testing.assert_close(giou[row], generalized_box_iou(BOXES_A, BOXES_B).diag())


def test_pairwise_aligned_iou_eps_enlarges_both_denominators():
    """IoU = I / (U + eps), GIoU = IoU - (C - U) / (C + eps), by hand with eps = 1: two equal
    10 x 10 boxes (I = U = C = 100), two disjoint 2 x 2 boxes 1 px apart (I = 0, U = 8, C = 10)."""
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 2, 2]])
    b = torch.tensor([[0.0, 0, 10, 10], [3, 0, 5, 2]])
    iou, giou = pairwise_aligned_iou(a, b, eps=1.0)
    torch.testing.assert_close(iou, torch.tensor([100 / 101, 0.0]))
    torch.testing.assert_close(giou, torch.tensor([100 / 101, -2 / 11]))


def test_iou_losses_against_torchvision():
    iou = box_iou(BOXES_A, BOXES_B).diag()
    giou = generalized_box_iou(BOXES_A, BOXES_B).diag()
    torch.testing.assert_close(iou_loss(BOXES_A, BOXES_B, "giou"), 1 - giou)
    torch.testing.assert_close(iou_loss(BOXES_A, BOXES_B), 1 - giou)  # default: GIoU
    torch.testing.assert_close(iou_loss(BOXES_A, BOXES_B, "iou"), 1 - iou)
    log_iou = iou_loss(BOXES_A, BOXES_B, "log_iou")
    torch.testing.assert_close(log_iou, -torch.log(iou.clamp(min=1e-6)))
    assert float(log_iou[2]) == pytest.approx(math.log(1e6), rel=1e-6)  # disjoint: IoU 1e-6
    torch.testing.assert_close(iou_loss(BOXES_A, BOXES_B, "iou", reduction="sum"), (1 - iou).sum())
    with pytest.raises(ValueError, match=r"^unknown IoU loss type 'diou'$"):
        iou_loss(BOXES_A, BOXES_B, "diou")


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_smooth_l1_is_pytorchs(beta):
    a, b = torch.randn(20, 4, generator=G), torch.randn(20, 4, generator=G)
    want = F.smooth_l1_loss(a, b, beta=beta, reduction="none")
    torch.testing.assert_close(smooth_l1_loss(a, b, beta), want)
    torch.testing.assert_close(smooth_l1_loss(a, b, beta, reduction="sum"), want.sum())


def test_smooth_l1_with_beta_zero_is_l1():
    a, b = torch.tensor([0.3, -2.0]), torch.tensor([0.0, 0.5])
    torch.testing.assert_close(smooth_l1_loss(a, b, 0.0), torch.tensor([0.3, 2.5]))
    torch.testing.assert_close(smooth_l1_loss(a, b, 5e-6), torch.tensor([0.3, 2.5]))


def test_centerness_by_hand_and_zero_outside():
    """FCOS Eq. 3: sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b))."""
    anchors = torch.tensor([[2.0, 2, 6, 6], [20, 20, 30, 30]])
    gts = torch.tensor([[0.0, 1, 10, 5], [0, 0, 10, 10]])
    # centre (4, 4): l 4, r 6, t 3, b 1
    want = torch.tensor([math.sqrt(4 / 6 * 1 / 3), 0.0])
    torch.testing.assert_close(centerness_targets(anchors, gts), want)


def test_unknown_reduction_is_an_error():
    with pytest.raises(ValueError, match=r"^unknown reduction 'avg'$"):
        focal_loss(LOGITS, BINARY, reduction="avg")


def test_hard_negative_mask_by_hand():
    """Per image: every positive plus ratio x max(P, 1) negatives of highest loss (ties: lowest
    index); an ignored element (neither) is never kept, whatever its loss."""
    loss = torch.tensor(
        [
            [0.1, 0.9, 0.5, 0.7, 0.2, 0.8],  # 1 positive, ratio 2: the 2 hardest negatives
            [0.3, 0.3, 0.3, 0.3, 0.9, 0.0],  # 0 positives: max(P, 1) = 1 -> 2; ties to index 0, 1
        ]
    )
    pos = torch.tensor([[True, False, False, False, False, False], [False] * 6])
    neg = torch.tensor(
        [
            [False, True, True, True, True, False],  # element 5 ignored (loss 0.8, not taken)
            [True, True, True, True, False, False],  # element 4 ignored (loss 0.9, not taken)
        ]
    )
    used = hard_negative_mask(loss, pos, neg, 2.0)
    assert used.tolist() == [
        [True, True, False, True, False, False],
        [True, True, False, False, False, False],
    ]
    assert used.tolist() == hard_negative_mask(loss.requires_grad_(), pos, neg, 2.0).tolist()
    # 3:1 (SSD) with 1 positive: 3 negatives; 1.5:1 rounds down to 1
    assert hard_negative_mask(loss[:1], pos[:1], neg[:1], 3.0)[0].tolist() == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]
    assert int((hard_negative_mask(loss[:1], pos[:1], neg[:1], 1.5) & neg[:1]).sum()) == 1
    # ratio <= 0: every positive and every negative, no ignored element
    assert torch.equal(hard_negative_mask(loss, pos, neg, 0), pos | neg)


@pytest.mark.parametrize("axes", [[0, 1, 2, 3], [1, 0, 3, 2]], ids=["as_is", "x_y_swapped"])
def test_centerness_of_sub_pixel_distances(axes):
    """Distances below 1 px count as they are: a centre 0.5 px below the top of a 10 px box
    (l = r = 5, t = 0.5, b = 9.5), the centre of a 1 x 1 box (every distance 0.5: centerness 1)
    and a centre 0.5 px above the box (t clamped to 0: centerness 0); the same with x and y
    swapped (l = 0.5, r = 9.5; a centre 0.5 px left of the box)."""
    anchors = torch.tensor([[4.0, 0.0, 6.0, 1.0], [0.0, 0.0, 1.0, 1.0], [4.0, -2.0, 6.0, 1.0]])
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 10.0, 10.0]])
    want = torch.tensor([math.sqrt(0.5 / 9.5), 1.0, 0.0])
    torch.testing.assert_close(centerness_targets(anchors[:, axes], gts[:, axes]), want)


def test_centerness_keeps_leading_dimensions():
    """(N, R, 4) -> (N, R), each element as computed alone (FCOS Eq. 3)."""
    anchors = torch.tensor([[[2.0, 2, 6, 6], [1, 3, 3, 5], [0, 0, 2, 2]]]).expand(2, 3, 4)
    gts = torch.tensor([[0.0, 1, 10, 5], [0, 0, 8, 12]]).unsqueeze(1).expand(2, 3, 4)
    # centres (4, 4), (2, 4), (1, 1) against GT 0 (x 0..10, y 1..5) and GT 1 (x 0..8, y 0..12)
    want = torch.tensor(
        [
            [4 / 6 * 1 / 3, 2 / 8 * 1 / 3, 0.0],
            [4 / 4 * 4 / 8, 2 / 6 * 4 / 8, 1 / 7 * 1 / 11],
        ]
    ).sqrt()
    torch.testing.assert_close(centerness_targets(anchors, gts), want)


def test_hard_negative_mask_quota_is_per_image():
    """The quota counts each image's own positives: 2 positives (ratio 1) keep 2 negatives in
    image 0, none (max(P, 1) = 1) keep 1 in image 1, not the batch's 2 each."""
    loss = torch.tensor([[0.0, 0.0, 0.9, 0.1, 0.5], [0.2, 0.8, 0.4, 0.6, 0.0]])
    pos = torch.tensor([[True, True, False, False, False], [False] * 5])
    neg = ~pos
    assert hard_negative_mask(loss, pos, neg, 1.0).tolist() == [
        [True, True, True, False, True],
        [False, True, False, False, False],
    ]


def test_hard_negative_mask_breaks_long_ties_by_index():
    """100 negatives of equal loss and 1 positive at 3:1: the 3 negatives of lowest index."""
    pos = torch.zeros(1, 101, dtype=torch.bool)
    pos[0, 50] = True
    used = hard_negative_mask(torch.zeros(1, 101), pos, ~pos, 3.0)
    assert used.nonzero()[:, 1].tolist() == [0, 1, 2, 50]


def test_hard_negative_mask_ignores_the_default_device():
    """Every tensor it makes lives on its inputs' device, whatever ``torch.set_default_device``
    says (a CPU batch under a default device of 'meta' here, of 'cuda' in practice)."""
    loss = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.2, 0.8] * 4])
    pos = torch.zeros(1, 24, dtype=torch.bool)
    pos[0, 0] = True
    with torch.device("meta"):
        used = hard_negative_mask(loss, pos, ~pos, 2.0)
    assert used.device == loss.device
    assert used.nonzero()[:, 1].tolist() == [0, 1, 7]
