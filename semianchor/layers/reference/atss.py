"""Pure-PyTorch specification of the ATSS ops (rules: :mod:`semianchor.layers.atss`).

Dense O(N*M*R) code; inputs are assumed validated (float32 boxes, int64 indices and counts).
"""

from __future__ import annotations

import torch

from ..boxes import anchor_centers, box_area, pairwise_iou_giou

__all__ = [
    "atss_assign_reference",
    "atss_candidate_stats_reference",
    "atss_candidates_reference",
    "atss_threshold_reference",
    "candidate_scores",
]


@torch.no_grad()
def atss_candidates_reference(
    anchors, num_anchors_per_level, gt_boxes, gt_counts, *, topk=9, anchors_per_location=1
):
    """Pure-PyTorch specification of :func:`~semianchor.layers.atss_candidates`: dense
    (N, M, R_l) distances per level, stable sort (ties -> lowest index). Inputs are assumed
    validated."""
    N, M = gt_boxes.shape[:2]
    K = int(topk) * int(anchors_per_location)
    device = gt_boxes.device
    centers = anchor_centers(anchors)  # (R, 2)
    gt_centers = (gt_boxes[..., :2] + gt_boxes[..., 2:]) * 0.5  # (N, M, 2)
    parts = []
    begin = 0
    for R_l in (int(n) for n in num_anchors_per_level):
        c = centers[begin : begin + R_l]
        dx = c[None, None, :, 0] - gt_centers[:, :, None, 0]  # (N, M, R_l)
        dy = c[None, None, :, 1] - gt_centers[:, :, None, 1]
        d2 = dx * dx + dy * dy
        order = torch.sort(d2, dim=-1, stable=True).indices[..., : min(K, R_l)]
        parts.append(order + begin)
        begin += R_l
    if parts:
        cand_idx = torch.cat(parts, dim=-1)
    else:
        cand_idx = torch.zeros((N, M, 0), dtype=torch.long, device=device)
    a = anchors[cand_idx]  # (N, M, C, 4)
    g = gt_boxes[:, :, None, :]
    cand_iou, _ = pairwise_iou_giou(a, box_area(a), g, box_area(g), with_giou=False)
    valid = (torch.arange(M, device=device)[None, :] < gt_counts[:, None])[..., None]
    cand_idx = torch.where(valid, cand_idx, torch.full_like(cand_idx, -1))
    cand_iou = torch.where(valid, cand_iou, torch.zeros_like(cand_iou))
    return cand_idx, cand_iou


def _sequential_sum(x: torch.Tensor) -> torch.Tensor:
    # Sum over the last dim strictly left to right, as the kernels' loop: float64 addition is
    # not associative, and the positive decision must not depend on the summation order.
    s = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    for c in range(x.shape[-1]):
        s = s + x[..., c]
    return s


def atss_threshold_reference(cand_idx, cand_scores, gt_counts):
    """(N, M) float32 mean + std (Bessel; std = 0 for one candidate; 0 without candidates or for
    padded GTs) over each GT's valid candidates, accumulated in float64 in candidate order."""
    N, M = cand_idx.shape[:2]
    valid_gt = torch.arange(M, device=cand_idx.device)[None, :] < gt_counts[:, None]
    valid = (cand_idx >= 0) & valid_gt[..., None]
    x = torch.where(
        valid, cand_scores.double(), torch.zeros((), dtype=torch.float64, device=cand_idx.device)
    )
    cnt = valid.sum(dim=-1)
    mean = _sequential_sum(x) / cnt.clamp(min=1)
    dev = torch.where(valid, x - mean[..., None], torch.zeros_like(x))
    var = _sequential_sum(dev * dev) / (cnt - 1).clamp(min=1)
    std = torch.where(cnt >= 2, var.sqrt(), torch.zeros_like(var))
    thr = torch.where(cnt >= 1, mean + std, torch.zeros_like(mean))
    return thr.float()


@torch.no_grad()
def atss_assign_reference(cand_idx, cand_scores, anchors, gt_boxes, gt_counts, *, center_eps=0.01):
    """Pure-PyTorch specification of :func:`~semianchor.layers.atss_assign` (dense (N, M, R)
    claim matrix)."""
    N, M, C = cand_idx.shape
    R = anchors.shape[0]
    device = cand_idx.device
    thr = atss_threshold_reference(cand_idx, cand_scores, gt_counts)
    valid_gt = torch.arange(M, device=device)[None, :] < gt_counts[:, None]
    valid = (cand_idx >= 0) & valid_gt[..., None]
    centers = anchor_centers(anchors)[cand_idx.clamp(min=0)]  # (N, M, C, 2)
    g = gt_boxes[:, :, None, :]
    ltrb = torch.stack(
        (
            centers[..., 0] - g[..., 0],
            centers[..., 1] - g[..., 1],
            g[..., 2] - centers[..., 0],
            g[..., 3] - centers[..., 1],
        ),
        dim=-1,
    )
    inside = ltrb.min(dim=-1).values > center_eps
    positive = valid & (cand_scores >= thr[..., None]) & inside  # (N, M, C)

    claimed = torch.zeros((N, M, R), dtype=torch.bool, device=device)
    score = torch.full((N, M, R), float("-inf"), device=device)
    n, m, c = positive.nonzero(as_tuple=True)
    r = cand_idx[n, m, c]
    claimed[n, m, r] = True
    score[n, m, r] = cand_scores[n, m, c]
    best = score.max(dim=1).values if M else torch.full((N, R), float("-inf"), device=device)
    # the lowest GT index among the claimers that reach the best score
    winners = claimed & (score == best[:, None, :])
    any_claim = claimed.any(dim=1)
    if M:
        first = winners.int().argmax(dim=1)
    else:
        first = torch.zeros((N, R), dtype=torch.long, device=device)
    matched = torch.where(any_claim, first, torch.full_like(first, -1))
    matched_score = torch.where(any_claim, best, torch.zeros_like(best))
    return matched, matched_score, thr


def candidate_scores(scores, cand_idx, cand_iou):
    """The per-candidate scores of :func:`~semianchor.layers.atss_candidate_stats`: the IoU
    (``scores`` None), a tensor, or ``scores(cand_idx, cand_iou)``."""
    if scores is None:
        return cand_iou
    if callable(scores):
        return scores(cand_idx, cand_iou)
    return scores


@torch.no_grad()
def atss_candidate_stats_reference(
    anchors,
    num_anchors_per_level,
    gt_boxes,
    gt_counts,
    *,
    topk=9,
    anchors_per_location=1,
    scores=None,
    center_eps=0.01,
):
    """Pure-PyTorch specification of :func:`~semianchor.layers.atss_candidate_stats` (dense)."""
    anchors = anchors.float()
    gt_boxes = gt_boxes.float()
    gt_counts = gt_counts.long()
    cand_idx, cand_iou = atss_candidates_reference(
        anchors,
        num_anchors_per_level,
        gt_boxes,
        gt_counts,
        topk=topk,
        anchors_per_location=anchors_per_location,
    )
    s = candidate_scores(scores, cand_idx, cand_iou).float()
    matched, matched_score, threshold = atss_assign_reference(
        cand_idx, s, anchors, gt_boxes, gt_counts, center_eps=center_eps
    )
    return matched, matched_score, threshold, cand_idx


# ------------------------------------------------ the references with the ops' schema arguments
def atss_candidates_op(
    anchors, gt_boxes, gt_counts, num_anchors_per_level, k_per_level, anchors_per_location, grid
):
    # K = topk * anchors_per_location is all the reference needs; the grid only picks a path.
    return atss_candidates_reference(
        anchors, num_anchors_per_level, gt_boxes, gt_counts, topk=k_per_level
    )


def atss_assign_op(cand_idx, cand_scores, anchors, gt_boxes, gt_counts, center_eps):
    return atss_assign_reference(
        cand_idx, cand_scores, anchors, gt_boxes, gt_counts, center_eps=center_eps
    )
