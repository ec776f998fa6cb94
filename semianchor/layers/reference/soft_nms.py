"""Pure-PyTorch specification of :func:`~semianchor.layers.soft_nms`."""

from __future__ import annotations

import math

import torch

from ..boxes import box_area, pairwise_iou_giou

__all__ = ["soft_nms_reference"]


@torch.no_grad()
def soft_nms_reference(
    boxes,
    scores,
    classes=None,
    *,
    method="linear",
    iou_threshold=0.3,
    sigma=0.5,
    min_score=0.001,
    max_kept=-1,
):
    """Pure-PyTorch specification of :func:`~semianchor.layers.soft_nms`: one Algorithm 1 run
    over all classes (a pick only rescores boxes of its own class), one vectorised step over the
    R boxes per pick. O(R) memory, O(R * P) time. Inputs are assumed validated (float32 / int64)."""
    R = boxes.shape[0]
    device = boxes.device
    cls = classes if classes is not None else torch.zeros(R, dtype=torch.long, device=device)
    dead = torch.tensor(-math.inf, device=device)
    # The parameters as float32 0-dim tensors: every comparison and division is float32, as in the
    # kernels (a Python float would leave the rounding of the scalar to the backend).
    f32 = dict(dtype=torch.float32, device=device)
    thr_t = torch.tensor(iou_threshold, **f32)
    sigma_t = torch.tensor(sigma, **f32)
    min_t = torch.tensor(min_score, **f32)
    live_score = torch.where(scores < min_t, dead, scores)
    areas = box_area(boxes)
    limit = R if max_kept < 0 else max_kept
    keep, kept = [], []
    while len(keep) < limit and R:
        i = int(torch.argmax(live_score))  # first maximal value: ties -> lowest index
        s = live_score[i].clone()
        if bool(s == dead):
            break
        keep.append(i)
        kept.append(s)
        live_score[i] = dead
        iou, _ = pairwise_iou_giou(boxes[i], areas[i], boxes, areas, with_giou=False)
        if method == "gaussian":
            factor = torch.exp((-(iou * iou) / sigma_t).double()).float()
            new = live_score * factor
        else:
            hit = iou >= thr_t
            decayed = live_score * (1 - iou) if method == "linear" else torch.zeros_like(iou)
            new = torch.where(hit, decayed, live_score)
        rescore = (cls == cls[i]) & (live_score != dead)
        new = torch.where(new < min_t, dead, new)
        live_score = torch.where(rescore, new, live_score)
    keep_t = torch.tensor(keep, dtype=torch.long, device=device)
    kept_t = torch.stack(kept) if kept else scores.new_zeros((0,))
    return keep_t, kept_t


def soft_nms_op(boxes, scores, classes, method, iou_threshold, sigma, min_score, max_kept):
    return soft_nms_reference(
        boxes,
        scores,
        classes,
        method=method,
        iou_threshold=iou_threshold,
        sigma=sigma,
        min_score=min_score,
        max_kept=max_kept,
    )
