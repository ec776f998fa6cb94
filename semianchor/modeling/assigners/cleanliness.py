"""Cleanliness scores: "Learning from Noisy Anchors for One-stage Object Detection" (Li et al.,
CVPR 2020), Sec. 4, Eq. 3-4 and Algorithm 1.

Shape legend (semianchor): N images, R anchors, M padded GTs, K classes, P positives.

The rule, per image:

1. ``A_pos``: for every GT, the ``topn`` anchors of highest IoU with it, IoU *before* regression
   (Algorithm 1, lines 2-5; N = 50). Everything else is ``A_neg`` (line 6): no anchor is ignored.
2. For b in A_pos, with its GT g: ``loc_a`` = IoU of b's *regressed* box with g (the
   IoU-after-regression kernel; the one public port we know of uses the IoU before regression,
   we follow the paper), ``cls_c`` = predicted probability of g's class.
3. Cleanliness (Eq. 3): ``c = alpha * loc_a + (1 - alpha) * cls_c`` for A_pos, 0 for A_neg.
4. Re-weighting (Eq. 4): ``r = (alpha * f(loc_a) + (1 - alpha) * f(cls_c)) ** gamma`` with
   ``f(x) = 1 / (1 - x)``, normalised to mean 1 over the positives; r = 1 for A_neg (line 12).

alpha sits on ``loc_a`` in both c and r. The paper is inconsistent: Algorithm 1 (lines 8-9)
puts alpha on ``cls_c``, while Eq. 3 and the ablation text ("alpha = 0.75 yields the best
result -- loc_a tends to be more important than cls_c as larger alpha offers better
performance", Sec. 5.3 / Table 4c) put it on ``loc_a``. We follow Eq. 3, for c and for r.

Choices where the paper is silent (tested in tests/modeling/test_noisy_anchor.py):

* Conflicts: an anchor in the top-N of several GTs goes to the GT with which its IoU (before
  regression) is highest; equal IoUs go to the lowest GT index. Ties at the N-th place of a
  GT's ranking go to the lowest anchor indices (deterministic on every device).
* An anchor with IoU 0 with a GT is never one of its positives (a GT with fewer than N
  overlapping anchors gets fewer positives; a zero-area GT gets none).
* ``f`` is made finite by clamping its argument to ``[0, 1 - eps]`` (``eps`` = 0.01: f <= 100):
  ``loc_a`` or ``cls_c`` equal to 1 (a perfect box, a saturated sigmoid) must not give an
  infinite weight that would zero every other positive after normalisation.
* Normalisation to mean 1 is over all positives of the batch (so ``sum(r) = P``, the positive
  count the losses are normalised by; an image with many clean anchors weighs more, as it would
  with a per-batch loss). Non-finite predictions count as 0 (``loc_a`` of a non-finite box is 0).
* Predictions are detached (the scores are targets, Sec. 4, not a differentiable term).
"""

from typing import Tuple

import torch
from torch import Tensor

from ...layers import iou_after_regression, topn_iou_match
from .base import AssignInputs, AssignResult, LabelAssigner

__all__ = [
    "CleanlinessAssigner",
    "topn_iou_assignment",
    "cleanliness_scores",
    "reweighting_factors",
    "normalize_to_unit_mean",
    "safe_inverse_complement",
]


@torch.no_grad()
def topn_iou_assignment(
    anchors: Tensor, gt_boxes: Tensor, gt_counts: Tensor, topn: int
) -> Tuple[Tensor, Tensor]:
    """A_pos of Algorithm 1 (lines 2-6): per GT the ``topn`` anchors of highest IoU.

    Args:
        anchors: (R, 4) XYXY shared by the images, or (N, R, 4) per image; gt_boxes: (N, M, 4)
            padded; gt_counts: (N,).
        topn: N of the paper.

    Returns:
        matched_gt: (N, R) int64, the GT of each A_pos anchor, -1 for A_neg.
        iou: (N, R) float, IoU (before regression) with that GT, 0 for A_neg.

    Conflicts go to the highest IoU (ties: lowest GT index); ties at the N-th place of a GT's
    ranking to the lowest anchor indices; IoU 0 never makes a positive.
    """
    # The dense per-image code this replaces is topn_iou_match_reference; the kernel visits only
    # the anchors that overlap each GT and never builds the (M, R) IoU matrix.
    return topn_iou_match(anchors, gt_boxes, gt_counts, int(topn))


def safe_inverse_complement(x: Tensor, eps: float) -> Tensor:
    """f(x) = 1 / (1 - x) of Eq. 4 with x clamped to [0, 1 - eps]: finite, at most 1 / eps."""
    return 1.0 / (1.0 - x.clamp(min=0.0, max=1.0 - eps))


def cleanliness_scores(loc_a: Tensor, cls_c: Tensor, alpha: float) -> Tensor:
    """Eq. 3 for A_pos: c = alpha * loc_a + (1 - alpha) * cls_c (alpha on loc_a, see module doc)."""
    return alpha * loc_a + (1.0 - alpha) * cls_c


def reweighting_factors(
    loc_a: Tensor, cls_c: Tensor, alpha: float, gamma: float, eps: float
) -> Tensor:
    """Eq. 4, before normalisation: r = (alpha * f(loc_a) + (1 - alpha) * f(cls_c)) ** gamma."""
    f_loc = safe_inverse_complement(loc_a, eps)
    f_cls = safe_inverse_complement(cls_c, eps)
    return (alpha * f_loc + (1.0 - alpha) * f_cls).pow(gamma)


def normalize_to_unit_mean(r: Tensor, mask: Tensor) -> Tensor:
    """r scaled so that its mean over ``mask`` is 1 (Sec. 4: "we also normalize r to have a mean
    of 1"); 1 outside ``mask`` (Algorithm 1, line 12). An empty mask returns all ones."""
    ones = torch.ones_like(r)
    count = mask.sum()
    if int(count) == 0:
        return ones
    total = torch.where(mask, r, torch.zeros_like(r)).sum()
    return torch.where(mask, r * (count.to(r.dtype) / total), ones)


class CleanlinessAssigner(LabelAssigner):
    """Top-N IoU positives with cleanliness soft targets and re-weighting factors (module doc).

    Output: ``labels`` = the GT's class for A_pos, K (background) for A_neg, never -1;
    ``soft_targets`` = c on A_pos, 0 elsewhere (None if ``soft_labels`` is False: binary
    targets); ``weights`` = normalised r on A_pos, 1 elsewhere (None if ``reweight`` is False);
    ``extras``: ``loc_a``, ``cls_c``, ``cleanliness`` (N, R) and ``iou`` (before regression).

    Args:
        topn: N, positives per GT (paper: 50; Table 4b: 30-40 slightly better with gamma = 1).
        alpha: balance of loc_a (alpha) against cls_c (1 - alpha), Eq. 3 (paper: 0.75).
        gamma: exponent of Eq. 4 (paper: 1; 0 disables the re-weighting).
        soft_labels: Table 3 "SL" switch.
        reweight: Table 3 "SR" switch.
        eps: f(x) = 1 / (1 - x) is evaluated at min(x, 1 - eps).
    """

    def __init__(
        self,
        *,
        topn: int = 50,
        alpha: float = 0.75,
        gamma: float = 1.0,
        soft_labels: bool = True,
        reweight: bool = True,
        eps: float = 0.01,
    ):
        if topn < 1:
            raise ValueError(f"topn must be >= 1, got {topn}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if not 0.0 < eps < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {eps}")
        self.topn = int(topn)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.soft_labels = bool(soft_labels)
        self.reweight = bool(reweight)
        self.eps = float(eps)

    @property
    def requires_predictions(self) -> bool:  # binary top-N (both switches off) is static
        return self.soft_labels or self.reweight

    def extra_repr(self):
        return (
            f"topn={self.topn}, alpha={self.alpha}, gamma={self.gamma}, "
            f"soft_labels={self.soft_labels}, reweight={self.reweight}, eps={self.eps}"
        )

    def prediction_terms(
        self, inputs: AssignInputs, matched_gt: Tensor, labels: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """(N, R) loc_a and cls_c of every anchor w.r.t. its matched GT (0 where unmatched)."""
        pos = matched_gt >= 0
        coder = inputs.box_coder
        if coder is None:
            raise ValueError("CleanlinessAssigner needs the detector's box_coder in AssignInputs")
        _, loc_a, _, _ = iou_after_regression(
            inputs.anchors,
            inputs.pred_regression.detach().float(),
            inputs.gt_boxes,
            inputs.gt_counts,
            matched_gt,
            **coder.kernel_kwargs(inputs.anchor_strides),
        )
        scores = inputs.pred_scores.detach().float()
        cls_c = torch.gather(scores, 2, labels.clamp(0, scores.shape[2] - 1)[..., None])[..., 0]
        zeros = torch.zeros_like(loc_a)
        loc_a = torch.where(pos, torch.nan_to_num(loc_a, nan=0.0).clamp(0.0, 1.0), zeros)
        cls_c = torch.where(pos, torch.nan_to_num(cls_c, nan=0.0).clamp(0.0, 1.0), zeros)
        return loc_a, cls_c

    def assign(self, inputs: AssignInputs) -> AssignResult:
        matched, iou = topn_iou_assignment(
            inputs.anchors, inputs.gt_boxes, inputs.gt_counts, self.topn
        )
        result = AssignResult.from_matches(
            matched, inputs.gt_classes, inputs.num_classes, extras={"iou": iou}
        )
        if not self.requires_predictions:
            return result
        pos = matched >= 0
        loc_a, cls_c = self.prediction_terms(inputs, matched, result.labels)
        c = torch.where(pos, cleanliness_scores(loc_a, cls_c, self.alpha), torch.zeros_like(loc_a))
        result.extras.update(loc_a=loc_a, cls_c=cls_c, cleanliness=c)
        if self.soft_labels:
            result.soft_targets = c
        if self.reweight:
            r = reweighting_factors(loc_a, cls_c, self.alpha, self.gamma, self.eps)
            result.weights = normalize_to_unit_mean(r, pos)
        return result
