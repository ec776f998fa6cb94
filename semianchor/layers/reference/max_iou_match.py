"""Pure-PyTorch specification of :func:`~semianchor.layers.max_iou_match` and
:func:`~semianchor.layers.topn_iou_match`: the dense (M, R) IoU matrix per image."""

from __future__ import annotations

import torch

from ..boxes import box_area, pairwise_iou_d2, pairwise_iou_giou

__all__ = ["max_iou_match_reference", "topn_iou_match_reference"]


@torch.no_grad()
def max_iou_match_reference(
    anchors,
    gt_boxes,
    gt_counts,
    num_anchors_per_level=None,
    *,
    thresholds=(0.4, 0.5),
    labels=(0, -1, 1),
    allow_low_quality_matches=True,
):
    """Pure-PyTorch specification of :func:`~semianchor.layers.max_iou_match`: per image the
    dense (M, R) IoU matrix and detectron2's ``Matcher`` steps, transcribed. Inputs are assumed
    validated."""
    N, R = gt_boxes.shape[0], anchors.shape[-2]
    device = gt_boxes.device
    matched = torch.zeros((N, R), dtype=torch.int64, device=device)
    match_labels = torch.full((N, R), int(labels[0]), dtype=torch.int8, device=device)
    max_iou = torch.zeros((N, R), dtype=torch.float32, device=device)
    bounds = [-float("inf"), *[float(t) for t in thresholds], float("inf")]
    for n in range(N):
        m = int(gt_counts[n])
        if m == 0 or R == 0:
            continue  # detectron2's empty-matrix default
        a = anchors[n] if anchors.dim() == 3 else anchors
        iou = pairwise_iou_d2(gt_boxes[n, :m].float(), a.float())  # (M, R)
        vals, idx = iou.max(dim=0)
        lab = torch.ones(R, dtype=torch.int8, device=device)
        for label, low, high in zip(labels, bounds[:-1], bounds[1:]):
            lab[(vals >= low) & (vals < high)] = int(label)
        if allow_low_quality_matches:
            best = iou.max(dim=1).values
            _, r = torch.nonzero(iou == best[:, None], as_tuple=True)
            lab[r] = 1
        matched[n], match_labels[n], max_iou[n] = idx, lab, vals
    return matched, match_labels, max_iou


@torch.no_grad()
def topn_iou_match_reference(anchors, gt_boxes, gt_counts, topn, num_anchors_per_level=None):
    """Pure-PyTorch specification of :func:`~semianchor.layers.topn_iou_match`: the dense (M, R)
    code of ``topn_iou_assignment`` (semianchor's IoU, equal to detectron2's on non-overflowing
    boxes). Inputs are assumed validated."""
    N, R = gt_boxes.shape[0], anchors.shape[-2]
    device = gt_boxes.device
    matched = torch.full((N, R), -1, dtype=torch.int64, device=device)
    best_iou = torch.zeros((N, R), dtype=torch.float32, device=device)
    n_top = min(int(topn), R)
    if n_top == 0:
        return matched, best_iou
    for i in range(N):
        m = int(gt_counts[i])
        if m == 0:
            continue
        a = (anchors[i] if anchors.dim() == 3 else anchors).float()
        g = gt_boxes[i, :m].float()
        iou, _ = pairwise_iou_giou(
            g[:, None], box_area(g)[:, None], a[None], box_area(a)[None], with_giou=False
        )  # (M, R)
        # value of the N-th best anchor per GT; everything strictly above it is in, and of the
        # anchors equal to it the lowest indices fill the remaining places (deterministic).
        kth = iou.topk(n_top, dim=1).values[:, -1:]  # (M, 1)
        above = iou > kth
        at = iou == kth
        remaining = n_top - above.sum(dim=1, keepdim=True)
        selected = above | (at & (at.cumsum(dim=1) <= remaining))
        selected &= iou > 0
        cand = torch.where(selected, iou, torch.full_like(iou, -1.0))
        val, gt_idx = cand.max(dim=0)  # first maximal index: ties -> lowest GT index
        pos = val > 0
        matched[i] = torch.where(pos, gt_idx, torch.full_like(gt_idx, -1))
        best_iou[i] = torch.where(pos, val, torch.zeros_like(val))
    return matched, best_iou


def max_iou_match_op(
    anchors,
    gt_boxes,
    gt_counts,
    num_anchors_per_level,
    thresholds,
    labels,
    allow_low_quality_matches,
    grid,
):
    # the levels and the grid only pick the kernels' path
    return max_iou_match_reference(
        anchors,
        gt_boxes,
        gt_counts,
        thresholds=thresholds,
        labels=labels,
        allow_low_quality_matches=allow_low_quality_matches,
    )


def topn_iou_match_op(anchors, gt_boxes, gt_counts, num_anchors_per_level, topn, grid):
    return topn_iou_match_reference(anchors, gt_boxes, gt_counts, topn)
