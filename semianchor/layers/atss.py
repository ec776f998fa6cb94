"""ATSS label assignment (Zhang et al., CVPR 2020, "Bridging the Gap Between Anchor-based and
Anchor-free Detection via Adaptive Training Sample Selection"), split in two ops that DLA reuses:

* :func:`atss_candidates`: per image, GT and pyramid level, the anchors nearest to the GT centre.
* :func:`atss_assign`: per-GT adaptive threshold (mean + std of the candidates' scores), the
  centre-in-GT test and conflict resolution, for any per-candidate score (IoU for ATSS, the
  metric m for DLA).
* :func:`atss_candidate_stats`: both in one call.

Legend: N images, R anchors (levels concatenated, detectron2 order), L levels, M padded GTs per
image (``gt_boxes`` (N, M, 4) with ``gt_counts`` (N,) valid rows; rows m >= gt_counts[n] are
padding and never used), K = topk * A candidates per level (A anchors per location), C = sum over
levels of min(K, R_l) candidates per GT. Boxes XYXY, absolute.

The rules, against the official code (github.com/sfzhang15/ATSS,
``atss_core/modeling/rpn/atss/loss.py``, ``prepare_targets``):

1. Candidates: on each level l the ``min(topk * A, R_l)`` anchors whose centres ``((x1+x2)/2,
   (y1+y2)/2)`` have the smallest L2 distance to the GT centre; the level size caps the count
   (official: ``topk = min(TOPK * num_anchors_per_loc, num_anchors_per_level)``). Distances are
   compared as float32 squared distances ``dx*dx + dy*dy`` (same order as the official sqrt'ed
   distance, which only merges some values into ties); ties go to the lowest anchor index
   (official: ``torch.topk``, whose tie order is unspecified: we make it deterministic).
   Order within a GT: level by level, and by (distance, index) inside a level.
2. Scores: IoU(anchor, GT) by default, modern convention without +1 on widths (as detectron2;
   the official code adds +1, as maskrcnn-benchmark did). IoU of zero-area boxes is 0.
3. Threshold per GT: ``mean + std`` over all of the GT's candidates (all levels together), with
   Bessel's correction as ``torch.std``'s default. Deviation: a GT with a single candidate has
   std = 0 (``torch.std`` gives NaN, which would make that GT match nothing); with no candidate
   (R = 0) the threshold is 0. Accumulated in float64 in candidate order, rounded to float32 once,
   identically in the reference and the kernels, so the positive decisions match exactly.
4. Positive iff ``score >= threshold`` AND the anchor centre is inside the GT with
   ``min(cx - x1, cy - y1, x2 - cx, y2 - cy) > center_eps`` (0.01, as the official code).
5. An anchor claimed by several GTs goes to the highest score; ties go to the lowest GT index
   (the official ``max`` over a -inf-filled IoU matrix, with torch's first-occurrence argmax).
6. A GT may end with no positive anchor (as the official code; nothing forces one).

Complexity of the kernels: the anchors of detectron2's anchor generator lie on a regular grid per
level. The kernels recognise it (one O(R) pass; :func:`infer_level_grids` is the Python twin, for
inspection and for passing grids explicitly) and then search
each GT's top-K in a growing window around the GT centre, O(K) per GT and level, whose stopping
rule is exact (see ``select_level_topk`` in ``csrc/box_math.h``): total O(R + N*M*K*L) time and
O(N*M*C + N*R) memory, never an R x M matrix. Levels that are not grids are scanned exhaustively
with a bounded top-K buffer (O(R_l) per GT and level, still O(N*M*C) memory). The ``_reference``
functions are dense O(N*M*R) PyTorch and are the specification.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

import torch

from ._utils import (
    as_float_boxes,
    as_index_tensor,
    check_gts,
    check_same_device,
    check_values_in_python,
    use_kernel,
)
from .iou_after_regression import box_area, pairwise_iou_giou

__all__ = [
    "atss_candidates",
    "atss_candidates_reference",
    "atss_assign",
    "atss_assign_reference",
    "atss_candidate_stats",
    "atss_candidate_stats_reference",
    "infer_level_grids",
    "num_candidates",
]

GridArg = Union[str, None, Sequence[float]]


def num_candidates(num_anchors_per_level: Sequence[int], k_per_level: int) -> int:
    """C = sum_l min(k_per_level, R_l)."""
    return sum(min(int(n), k_per_level) for n in num_anchors_per_level)


def anchor_centers(anchors: torch.Tensor) -> torch.Tensor:
    """(R, 2) float32 centres ``(x1 + x2) * 0.5`` (the kernels use the same expression)."""
    return (anchors[:, :2] + anchors[:, 2:]) * 0.5


def _per_image(fn, anchors, gt_boxes, gt_counts, *args, **kwargs):
    """Run ``fn`` image by image for per-image anchors (N, R, 4) and concatenate its outputs
    along the image axis (the kernels take anchors shared by the batch)."""
    if anchors.shape[0] != gt_boxes.shape[0]:
        raise ValueError(
            f"per-image anchors {tuple(anchors.shape)} for {gt_boxes.shape[0]} images of GTs"
        )
    outs = [
        fn(anchors[i], *args[:1], gt_boxes[i : i + 1], gt_counts[i : i + 1], *args[1:], **kwargs)
        for i in range(anchors.shape[0])
    ]
    if not outs:
        raise ValueError("per-image anchors need at least one image")
    return tuple(torch.cat(parts, dim=0) for parts in zip(*outs))


def infer_level_grids(
    anchors: torch.Tensor, num_anchors_per_level: Sequence[int], anchors_per_location: int
) -> List[float]:
    """Recognise detectron2's anchor layout: 7 floats per level for the kernels' grid path.

    Level l is a grid when its R_l = H * W * A anchors have centres within ``delta`` of
    ``(ox + i * sx, oy + j * sy)`` for anchor ``(j * W + i) * A + a`` (A anchors per location
    fastest, then x, then y, as ``DefaultAnchorGenerator``), with sx, sy > 0 and delta at most a
    quarter of the stride. The values are (ox, oy, sx, sy, W, H, delta); W = 0 marks a level that is
    not a grid (exhaustive path). ``delta`` (the float rounding of the centres, ~1e-4 px) enters the
    kernels' exact stopping rule, so any layout within delta of the grid gives exact results.
    """
    out: List[float] = []
    A = int(anchors_per_location)
    centers = anchor_centers(anchors).double()
    begin = 0
    for R_l in (int(n) for n in num_anchors_per_level):
        c, begin = centers[begin : begin + R_l], begin + R_l
        out.extend(_level_grid(c, R_l, A))
    return out


def _level_grid(c: torch.Tensor, R_l: int, A: int) -> List[float]:
    none = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    if R_l == 0 or A <= 0 or R_l % A:
        return none
    P = R_l // A
    loc = c.view(P, A, 2)
    xs, ys = loc[:, 0, 0], loc[:, 0, 1]
    drops = torch.nonzero(xs[1:] <= xs[:-1])  # x restarts (or stays, W = 1) on a new row
    W = int(drops[0, 0]) + 1 if drops.numel() else P
    if P % W:
        return none
    H = P // W
    ox, oy = float(xs[0]), float(ys[0])
    sx = (float(xs[W - 1]) - ox) / (W - 1) if W > 1 else 1.0
    sy = (float(ys[(H - 1) * W]) - oy) / (H - 1) if H > 1 else 1.0
    if not (sx > 0 and sy > 0):
        return none
    i = torch.arange(W, dtype=torch.float64, device=c.device)
    j = torch.arange(H, dtype=torch.float64, device=c.device)
    ideal_x = (ox + i * sx).view(1, W, 1)
    ideal_y = (oy + j * sy).view(H, 1, 1)
    grid = loc.view(H, W, A, 2)
    delta = torch.maximum(
        (grid[..., 0] - ideal_x).abs().max(), (grid[..., 1] - ideal_y).abs().max()
    )
    delta = float(delta)
    limit = 0.25 * min(sx if W > 1 else float("inf"), sy if H > 1 else float("inf"))
    if not (delta <= limit):  # also rejects NaN
        return none
    return [ox, oy, sx, sy, float(W), float(H), delta]


def _validate_candidates(
    anchors, num_anchors_per_level, gt_boxes, gt_counts, topk, anchors_per_location, values=True
):
    anchors = as_float_boxes(anchors, "anchors", "(R, 4)", (2,))
    if values and not bool(torch.isfinite(anchors).all()):
        raise ValueError("anchors holds non-finite coordinates")
    try:
        levels = [int(n) for n in num_anchors_per_level]
    except TypeError:
        raise ValueError(
            f"num_anchors_per_level must be a sequence of ints, got {num_anchors_per_level!r}"
        ) from None
    if any(n < 0 for n in levels) or sum(levels) != anchors.shape[0]:
        raise ValueError(
            f"num_anchors_per_level must be non-negative and sum to R = anchors.shape[0] = "
            f"{anchors.shape[0]}, got {levels} (sum {sum(levels)})"
        )
    if int(topk) < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if int(anchors_per_location) < 1:
        raise ValueError(f"anchors_per_location must be >= 1, got {anchors_per_location}")
    gt_boxes, gt_counts = check_gts(gt_boxes, gt_counts, values=values)
    check_same_device(anchors.device, gt_boxes=gt_boxes)
    return anchors, levels, gt_boxes, gt_counts


@torch.no_grad()
def atss_candidates(
    anchors: torch.Tensor,
    num_anchors_per_level: Sequence[int],
    gt_boxes: torch.Tensor,
    gt_counts: torch.Tensor,
    *,
    topk: int = 9,
    anchors_per_location: int = 1,
    grid: GridArg = "auto",
):
    """ATSS candidates: per image, GT and level the ``min(topk * A, R_l)`` anchors nearest to
    the GT centre (rule 1 of the module docstring) and their IoU with the GT (rule 2).

    Args:
        anchors: (R, 4) shared by all images, or (N, R, 4) per image; levels concatenated.
        num_anchors_per_level: L ints summing to R.
        gt_boxes: (N, M, 4) padded; gt_counts: (N,).
        topk: k per level (9 for ATSS); anchors_per_location: A.
        grid: ``"auto"`` (default): the kernel recognises per-level grids (C++ twin of
            :func:`infer_level_grids`) for the O(K) window search; None: exhaustive per-level
            scan; or the 7*L floats of :func:`infer_level_grids`. Results are identical on every
            path.

    Returns:
        cand_idx (N, M, C) int64 anchor indices, cand_iou (N, M, C) float32; padded GTs have
        cand_idx -1 and cand_iou 0.
    """
    if not isinstance(anchors, torch.Tensor):
        raise ValueError(
            f"anchors must be a torch.Tensor of shape (R, 4), got {type(anchors).__name__}"
        )
    if anchors.dim() == 3:  # per-image anchors
        return _per_image(
            atss_candidates,
            anchors,
            gt_boxes,
            gt_counts,
            num_anchors_per_level,
            topk=topk,
            anchors_per_location=anchors_per_location,
            grid=grid,
        )
    kernel = use_kernel("atss_candidates", anchors.device)
    anchors, levels, gt_boxes, gt_counts = _validate_candidates(
        anchors,
        num_anchors_per_level,
        gt_boxes,
        gt_counts,
        topk,
        anchors_per_location,
        values=check_values_in_python(kernel, anchors.device),
    )
    k_per_level = int(topk) * int(anchors_per_location)
    if isinstance(grid, str) and grid != "auto":
        raise ValueError(f"grid must be 'auto', None or a list of 7 floats per level, got {grid!r}")
    if kernel:
        # "auto" -> []: the kernel recognises the grids itself (C++ twin of infer_level_grids);
        # None -> "no grid" (W = 0) on every level: exhaustive scans.
        if isinstance(grid, str):
            grid = []
        elif grid is None:
            grid = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0] * len(levels)
        else:
            grid = [float(v) for v in grid]
        return torch.ops.semianchor.atss_candidates(
            anchors, gt_boxes, gt_counts, levels, k_per_level, int(anchors_per_location), grid
        )
    return atss_candidates_reference(
        anchors, levels, gt_boxes, gt_counts, topk=topk, anchors_per_location=anchors_per_location
    )


@torch.no_grad()
def atss_candidates_reference(
    anchors, num_anchors_per_level, gt_boxes, gt_counts, *, topk=9, anchors_per_location=1
):
    """Pure-PyTorch specification of :func:`atss_candidates`: dense (N, M, R_l) distances per
    level, stable sort (ties -> lowest index). Inputs are assumed validated."""
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


def _validate_assign(cand_idx, cand_scores, anchors, gt_boxes, gt_counts, num_anchors, values=True):
    anchors = as_float_boxes(anchors, "anchors", "(R, 4)", (2,))
    R = anchors.shape[0]
    if num_anchors is not None and int(num_anchors) != R:
        raise ValueError(f"num_anchors = {num_anchors} differs from anchors.shape[0] = {R}")
    gt_boxes, gt_counts = check_gts(gt_boxes, gt_counts, values=values)
    N, M = gt_boxes.shape[:2]
    cand_idx = as_index_tensor(cand_idx, "cand_idx")
    if cand_idx.dim() != 3 or cand_idx.shape[:2] != (N, M):
        raise ValueError(
            f"cand_idx must have shape (N, M, C) with (N, M) = {(N, M)}, "
            f"got {tuple(cand_idx.shape)}"
        )
    if not isinstance(cand_scores, torch.Tensor) or not cand_scores.is_floating_point():
        raise ValueError("cand_scores must be a floating-point tensor of shape (N, M, C)")
    if cand_scores.shape != cand_idx.shape:
        raise ValueError(
            f"cand_scores must have the shape of cand_idx {tuple(cand_idx.shape)}, "
            f"got {tuple(cand_scores.shape)}"
        )
    cand_scores = cand_scores.float()
    check_same_device(anchors.device, gt_boxes=gt_boxes, cand_idx=cand_idx, cand_scores=cand_scores)
    if values and cand_idx.numel():
        if bool(((cand_idx < -1) | (cand_idx >= R)).any()):
            raise ValueError(f"cand_idx must hold -1 or anchor indices in [0, R = {R})")
        used = (cand_idx >= 0) & (
            torch.arange(M, device=cand_idx.device)[None, :, None] < gt_counts[:, None, None]
        )
        if not bool(torch.isfinite(cand_scores[used]).all()):
            raise ValueError("cand_scores holds non-finite scores for valid candidates")
    return cand_idx, cand_scores, anchors, gt_boxes, gt_counts


@torch.no_grad()
def atss_assign(
    cand_idx: torch.Tensor,
    cand_scores: torch.Tensor,
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_counts: torch.Tensor,
    num_anchors: Optional[int] = None,
    *,
    center_eps: float = 0.01,
):
    """ATSS thresholding and conflict resolution (rules 3-6 of the module docstring) for any
    per-candidate score.

    Args:
        cand_idx: (N, M, C) anchor indices, -1 for unused slots (from :func:`atss_candidates`).
        cand_scores: (N, M, C) score of each candidate (IoU for ATSS, the metric m for DLA); must be
            finite where used.
        anchors: (R, 4), or (N, R, 4) per image; gt_boxes (N, M, 4) padded; gt_counts (N,).
        num_anchors: optional R, checked against anchors.
        center_eps: the margin of the centre-inside test (0.01 as the official code).

    Returns:
        matched_gt (N, R) int64 (-1 = negative), matched_score (N, R) float32 (the winning
        candidate's score; 0 for negatives), threshold (N, M) float32 (0 for padded GTs).
    """
    if not isinstance(anchors, torch.Tensor):
        raise ValueError(
            f"anchors must be a torch.Tensor of shape (R, 4), got {type(anchors).__name__}"
        )
    if anchors.dim() == 3:  # per-image anchors: one call per image
        if not isinstance(cand_idx, torch.Tensor) or not isinstance(cand_scores, torch.Tensor):
            raise ValueError("cand_idx and cand_scores must be tensors of shape (N, M, C)")
        outs = [
            atss_assign(
                cand_idx[i : i + 1],
                cand_scores[i : i + 1],
                anchors[i],
                gt_boxes[i : i + 1],
                gt_counts[i : i + 1],
                num_anchors,
                center_eps=center_eps,
            )
            for i in range(anchors.shape[0])
        ]
        return tuple(torch.cat(parts, dim=0) for parts in zip(*outs))
    kernel = use_kernel("atss_assign", anchors.device)
    cand_idx, cand_scores, anchors, gt_boxes, gt_counts = _validate_assign(
        cand_idx,
        cand_scores,
        anchors,
        gt_boxes,
        gt_counts,
        num_anchors,
        values=check_values_in_python(kernel, anchors.device),
    )
    if kernel:
        return torch.ops.semianchor.atss_assign(
            cand_idx, cand_scores, anchors, gt_boxes, gt_counts, float(center_eps)
        )
    return atss_assign_reference(
        cand_idx, cand_scores, anchors, gt_boxes, gt_counts, center_eps=center_eps
    )


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
    """Pure-PyTorch specification of :func:`atss_assign` (dense (N, M, R) claim matrix)."""
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


def _scores_for(scores, cand_idx, cand_iou):
    if scores is None:
        return cand_iou
    if callable(scores):
        return scores(cand_idx, cand_iou)
    return scores


@torch.no_grad()
def atss_candidate_stats(
    anchors: torch.Tensor,
    num_anchors_per_level: Sequence[int],
    gt_boxes: torch.Tensor,
    gt_counts: torch.Tensor,
    *,
    topk: int = 9,
    anchors_per_location: int = 1,
    scores: Union[None, torch.Tensor, Callable] = None,
    center_eps: float = 0.01,
    grid: GridArg = "auto",
):
    """:func:`atss_candidates` followed by :func:`atss_assign`: the whole ATSS rule.

    Args:
        scores: None -> the candidates' IoU (ATSS). A (N, M, C) tensor aligned with the
            candidates (their order is deterministic, see :func:`atss_candidates`), or a callable
            ``scores(cand_idx, cand_iou) -> (N, M, C)`` (e.g. DLA's metric m computed on the
            candidates only).
        Other arguments: as :func:`atss_candidates` and :func:`atss_assign`.

    Returns:
        matched_gt (N, R) int64, matched_score (N, R) float32, threshold (N, M) float32,
        cand_idx (N, M, C) int64.
    """
    cand_idx, cand_iou = atss_candidates(
        anchors,
        num_anchors_per_level,
        gt_boxes,
        gt_counts,
        topk=topk,
        anchors_per_location=anchors_per_location,
        grid=grid,
    )
    s = _scores_for(scores, cand_idx, cand_iou)
    matched, matched_score, threshold = atss_assign(
        cand_idx, s, anchors, gt_boxes, gt_counts, center_eps=center_eps
    )
    return matched, matched_score, threshold, cand_idx


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
    """Pure-PyTorch specification of :func:`atss_candidate_stats` (dense)."""
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
    s = _scores_for(scores, cand_idx, cand_iou).float()
    matched, matched_score, threshold = atss_assign_reference(
        cand_idx, s, anchors, gt_boxes, gt_counts, center_eps=center_eps
    )
    return matched, matched_score, threshold, cand_idx
