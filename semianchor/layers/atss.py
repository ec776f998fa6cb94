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
level. The kernels recognise it (one O(R) pass; :func:`~semianchor.layers.infer_level_grids` is the
Python twin, for inspection and for passing grids explicitly) and then search each GT's top-K in a
growing window around the GT centre, O(K) per GT and level, whose stopping rule is exact (see
``select_level_topk`` in ``csrc/box_math.h``): total O(R + N*M*K*L) time and O(N*M*C + N*R)
memory, never an R x M matrix. Levels that are not grids are scanned exhaustively
with a bounded top-K buffer (O(R_l) per GT and level, still O(N*M*C) memory). The ``_reference``
functions (:mod:`semianchor.layers.reference`) are dense O(N*M*R) PyTorch and are the
specification.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from ._dispatch import dispatch
from ._validation import (
    as_float_boxes,
    as_index_tensor,
    as_levels,
    check_candidates,
    check_finite,
    check_gt_values,
    check_gts,
    check_same_device,
    device_of,
)
from .anchor_layout import NO_GRID
from .reference.atss import candidate_scores

__all__ = ["atss_assign", "atss_candidate_stats", "atss_candidates"]

GridArg = Union[str, None, Sequence[float]]


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


def _validate_candidates(
    anchors, num_anchors_per_level, gt_boxes, gt_counts, topk, anchors_per_location, grid, values
):
    """The schema arguments of ``torch.ops.semianchor.atss_candidates``, validated."""
    anchors = as_float_boxes(anchors, "anchors", "(R, 4)", (2,))
    levels = as_levels(num_anchors_per_level, anchors.shape[0])
    if int(topk) < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if int(anchors_per_location) < 1:
        raise ValueError(f"anchors_per_location must be >= 1, got {anchors_per_location}")
    gt_boxes, gt_counts = check_gts(gt_boxes, gt_counts, values=False)
    check_same_device(anchors.device, gt_boxes=gt_boxes)
    # "auto" -> []: the kernels recognise the grids themselves (the C++ twin of
    # infer_level_grids); None -> "no grid" on every level: exhaustive scans.
    if isinstance(grid, str):
        if grid != "auto":
            raise ValueError(
                f"grid must be 'auto', None or a list of 7 floats per level, got {grid!r}"
            )
        grid = []
    elif grid is None:
        grid = NO_GRID * len(levels)
    else:
        grid = [float(v) for v in grid]
        if len(grid) != 7 * len(levels):
            raise ValueError(
                f"grid must be 'auto', None or a list of 7 floats per level (7 * {len(levels)}), "
                f"got {len(grid)} values"
            )
    if values:
        check_finite(anchors, "anchors holds non-finite coordinates")
        check_gt_values(gt_boxes, gt_counts)
    k_per_level = int(topk) * int(anchors_per_location)
    return anchors, gt_boxes, gt_counts, levels, k_per_level, int(anchors_per_location), grid


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
            :func:`~semianchor.layers.infer_level_grids`) for the O(K) window search; None:
            exhaustive per-level scan; or the 7*L floats of
            :func:`~semianchor.layers.infer_level_grids`. Results are identical on every
            path.

    Returns:
        cand_idx (N, M, C) int64 anchor indices, cand_iou (N, M, C) float32; padded GTs have
        cand_idx -1 and cand_iou 0.
    """
    device = device_of(anchors, "anchors", "(R, 4)")
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
    return dispatch(
        "atss_candidates",
        device,
        lambda values: _validate_candidates(
            anchors,
            num_anchors_per_level,
            gt_boxes,
            gt_counts,
            topk,
            anchors_per_location,
            grid,
            values,
        ),
    )


def _validate_assign(
    cand_idx, cand_scores, anchors, gt_boxes, gt_counts, num_anchors, center_eps, values
):
    """The schema arguments of ``torch.ops.semianchor.atss_assign``, validated."""
    anchors = as_float_boxes(anchors, "anchors", "(R, 4)", (2,))
    R = anchors.shape[0]
    if num_anchors is not None and int(num_anchors) != R:
        raise ValueError(f"num_anchors = {num_anchors} differs from anchors.shape[0] = {R}")
    gt_boxes, gt_counts = check_gts(gt_boxes, gt_counts, values=False)
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
    if values:
        check_gt_values(gt_boxes, gt_counts)
        check_candidates(cand_idx, cand_scores, gt_counts, R)
    return cand_idx, cand_scores, anchors, gt_boxes, gt_counts, float(center_eps)


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
    device = device_of(anchors, "anchors", "(R, 4)")
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
    return dispatch(
        "atss_assign",
        device,
        lambda values: _validate_assign(
            cand_idx, cand_scores, anchors, gt_boxes, gt_counts, num_anchors, center_eps, values
        ),
    )


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
    s = candidate_scores(scores, cand_idx, cand_iou)
    matched, matched_score, threshold = atss_assign(
        cand_idx, s, anchors, gt_boxes, gt_counts, center_eps=center_eps
    )
    return matched, matched_score, threshold, cand_idx
