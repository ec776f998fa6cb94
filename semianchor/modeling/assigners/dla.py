"""DLA: Dynamic Label Assignment (Jiang, Xiao, Gu, ICSCA 2022), Sec. 3.1-3.2.

ATSS's selection rule (k nearest centres per level, threshold mean + std, centre inside the GT,
conflicts to the highest score) run on a prediction-aware metric instead of the anchor IoU:

    m = (1 - alpha) * s + alpha * g                                   (Eq. 1)
    g = (1 - s) * IoU_prior + s * IoU_pred                             (Eq. 3)

with alpha the current value of Eq. 2's schedule (the DLA detector owns it and passes alpha in
``inputs.extras["alpha"]``), s the predicted probability of the GT's class at the candidate,
IoU_prior the IoU of the candidate's anchor box with the GT and IoU_pred the IoU of the box
decoded from the candidate's (detached) regression with the GT. The threshold/centre/conflict
statistics are the compiled ``atss_candidate_stats`` op with a caller-given score (not a copy of
ATSS); IoU_pred comes from the ``iou_after_regression`` op. Positives also get the regression
weight w = m^gamma (Eq. 5).

Shape legend: N images, R anchors, M padded GTs, K classes, L levels, A anchors per location,
C candidates per GT (sum over levels of min(topk * A, R_l)).
"""

import torch
from torch import Tensor

from ...layers import iou_after_regression
from .atss import ATSSAssigner
from .base import AssignInputs, AssignResult

__all__ = ["DLAAssigner", "dla_metric"]


def dla_metric(s: Tensor, iou_prior: Tensor, iou_pred: Tensor, alpha: float) -> Tensor:
    """DLA Eq. 1 and 3, element-wise: ``m = (1 - alpha) * s + alpha * g`` with the geometric
    score ``g = (1 - s) * iou_prior + s * iou_pred``. All inputs in [0, 1] -> m in [0, 1]."""
    g = (1.0 - s) * iou_prior + s * iou_pred
    return (1.0 - alpha) * s + alpha * g


class DLAAssigner(ATSSAssigner):
    """Prediction-aware ATSS (DLA Sec. 3.2). Needs ``pred_scores``, ``pred_regression``,
    ``box_coder`` and ``extras["alpha"]`` (the detector's current alpha, Eq. 2).

    Per GT: candidates = on each level the ``topk * A`` anchors whose centres are nearest to the
    GT centre; their metric m (module docstring) is computed on the candidates only; threshold =
    mean + std (Bessel) of the candidates' m; positive iff m >= threshold (as ATSS's kernel; the
    paper says "greater than", which differs only on exact ties) and the anchor centre lies inside
    the GT (margin ``center_eps``); an anchor claimed by several GTs goes to the highest m (ties:
    lowest GT index). With s = 0 everywhere and alpha = 1, m is exactly the anchor IoU and the
    result is ATSS's.

    Output: ``labels``/``matched_gt`` as every assigner (binary classification target: DLA's
    focal loss, Eq. 4, uses binary labels), ``weights`` = m^gamma for positives and 0 otherwise
    (DLA Eq. 5, the regression weight), ``extras["metric"]`` (N, R) = m of the matched GT for
    positives and 0 otherwise (the metric head's target, Eq. 7), plus ``threshold`` (N, M),
    ``candidates`` (N, M, C), ``candidate_metric`` (N, M, C) and ``alpha`` (scalar tensor).

    Args:
        topk: k, candidates per level per anchor-per-location (paper: 10).
        gamma: exponent of the regression weight w = m^gamma (paper: 1; 0 disables re-weighting).
        center_eps: margin of the centre-inside-GT test (as ATSS: 0.01).
    """

    requires_predictions = True

    def __init__(self, *, topk: int = 10, gamma: float = 1.0, center_eps: float = 0.01):
        super().__init__(topk=topk, center_eps=center_eps)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def extra_repr(self):
        return f"topk={self.topk}, gamma={self.gamma}, center_eps={self.center_eps}"

    def candidate_strides(self, inputs: AssignInputs) -> Tensor:
        """(C,) stride of each candidate slot: slots are level-ordered, min(topk*A, R_l) per
        level, identically for every GT (see ``atss_candidates``)."""
        k = self.topk * inputs.uniform_anchors_per_location("DLA")
        parts, start = [], 0
        for n in inputs.num_anchors_per_level:
            n = int(n)
            if n > 0:
                parts.append(inputs.anchor_strides[start].expand(min(k, n)))
            start += n
        if not parts:
            return inputs.anchor_strides.new_zeros((0,))
        return torch.cat(parts).float()

    def candidate_metric(
        self, inputs: AssignInputs, alpha: float, cand_idx: Tensor, cand_iou: Tensor
    ) -> Tensor:
        """(N, M, C) metric m of each (GT, candidate) pair; 0 on padded slots.

        IoU_pred for all pairs in one ``iou_after_regression`` call: every (image, GT) row becomes
        a pseudo-image with its C candidates as anchors and that GT as its only GT (matched_gt =
        0), so nothing of size N x R x M is formed.
        """
        N, M, C = cand_idx.shape
        if cand_idx.numel() == 0:
            return cand_iou.new_zeros((N, M, C))
        valid = cand_idx >= 0  # padded GTs: -1
        idx = cand_idx.clamp(min=0)
        n_idx = torch.arange(N, device=idx.device)[:, None, None].expand(N, M, C)
        # s: predicted probability of the GT's class at the candidate
        gt_cls = inputs.gt_classes[:, :, None].expand(N, M, C)
        s = inputs.pred_scores[n_idx, idx, gt_cls].float()  # (N, M, C)
        # IoU_pred through the kernel, one pseudo-image per (image, GT) row
        anchors = inputs.anchors_at(n_idx, idx).reshape(N * M, C, 4).float()
        regression = inputs.pred_regression[n_idx, idx].reshape(N * M, C, 4).float()
        row_valid = inputs.valid_gt_mask().reshape(N * M)
        matched = torch.where(
            row_valid[:, None],
            torch.zeros_like(idx.reshape(N * M, C)),
            torch.full_like(idx.reshape(N * M, C), -1),
        )
        kwargs = inputs.box_coder.kernel_kwargs(self.candidate_strides(inputs))
        _, iou_pred, _, _ = iou_after_regression(
            anchors,
            regression,
            inputs.gt_boxes.reshape(N * M, 1, 4).float(),
            row_valid.long(),
            matched,
            **kwargs,
        )
        iou_pred = iou_pred.reshape(N, M, C)
        # a non-finite prediction must not poison the statistics: it scores as s = 0 / IoU 0
        s = torch.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0).clamp(0.0, 1.0)
        m = dla_metric(s, cand_iou.float(), iou_pred, alpha)
        return torch.where(valid, m, torch.zeros_like(m))

    def assign(self, inputs: AssignInputs) -> AssignResult:
        if inputs.box_coder is None:
            raise ValueError("DLAAssigner needs the detector's box_coder to decode pred_regression")
        if "alpha" not in inputs.extras:
            raise ValueError(
                "DLAAssigner needs inputs.extras['alpha'] (the DLA detector passes its current "
                "alpha)"
            )
        alpha = float(inputs.extras["alpha"])
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        cache = {}

        def metric(cand_idx, cand_iou):
            cache["m"] = self.candidate_metric(inputs, alpha, cand_idx, cand_iou)
            return cache["m"]

        matched, matched_m, threshold, cand_idx = self.candidate_stats(inputs, scores=metric)
        pos = matched >= 0
        matched_m = torch.where(pos, matched_m, torch.zeros_like(matched_m))
        weights = torch.where(pos, matched_m.pow(self.gamma), torch.zeros_like(matched_m))
        return AssignResult.from_matches(
            matched,
            inputs.gt_classes,
            inputs.num_classes,
            weights=weights,
            extras={
                "metric": matched_m,
                "threshold": threshold,
                "candidates": cand_idx,
                "candidate_metric": cache.get("m", threshold.new_zeros(cand_idx.shape)),
                "alpha": torch.tensor(alpha),
            },
        )
