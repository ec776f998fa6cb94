"""IoU matching without the M x R IoU matrix:

* :func:`max_iou_match`: detectron2's ``pairwise_iou`` + ``Matcher`` (RetinaNet, RPN, SSD-style
  max-IoU assignment), batched over padded GTs.
* :func:`topn_iou_match`: per GT the N anchors of highest IoU, conflicts to the highest IoU
  ("Learning from Noisy Anchors", Algorithm 1 A_pos; ``CleanlinessAssigner``).

Legend: N images, R anchors (levels concatenated, detectron2 order), L levels, A anchors per
location, M padded GTs per image (``gt_boxes`` (N, M, 4) with ``gt_counts`` (N,) valid rows; rows
m >= gt_counts[n] are padding and never read). Boxes XYXY, absolute. ``anchors`` is (R, 4),
shared by the images, or (N, R, 4), one set per image.

IoU: detectron2's ``pairwise_iou`` in float32, ``inter / ((area_gt + area_anchor) - inter)`` when
the intersection is positive, else 0 (so a zero-area box has IoU 0 with everything). This equals
:func:`semianchor.layers.pairwise_iou_giou` on every finite input whose areas do not overflow.

max-IoU rules (detectron2 ``Matcher``, ``detectron2/modeling/matcher.py``), per image:

1. Each anchor's match is the GT of highest IoU; equal IoUs go to the lowest GT index (torch's
   argmax over the GT axis). An anchor that overlaps no GT matches GT 0 with IoU 0, and an image
   without GTs gives GT 0, IoU 0 and ``labels[0]`` everywhere (detectron2's empty-matrix default).
2. Label ``labels[k]`` with k = the number of thresholds <= the anchor's best IoU (thresholds
   compared as float32, as torch compares a float32 tensor with a Python float).
3. ``allow_low_quality_matches``: for every valid GT, each anchor whose IoU with it equals the
   GT's highest IoU (all ties) gets label 1, keeping its own match from rule 1 (which may be
   another GT, exactly as detectron2). A GT whose highest IoU is 0 (zero-area, outside every
   anchor) is "reached" by every anchor: the whole image gets label 1, as in detectron2.

top-N rules (the documented behaviour of ``topn_iou_assignment``), per image:

1. Per GT the ``min(topn, R)`` anchors of highest IoU, ties to the lowest anchor index; an anchor
   with IoU 0 is never selected (a GT overlapping fewer anchors gets fewer).
2. An anchor selected by several GTs goes to the highest IoU; equal IoUs to the lowest GT index.

Complexity of the kernels: detectron2's anchors lie on a grid per level with A cell shapes per
location. The kernels recognise the grids (one O(R) pass, the same recognition as ATSS's
``infer_level_grids``; with ``num_anchors_per_level`` omitted the levels are found where the
anchor centres restart at the top of the image) and measure, per level and shape, how far the
anchors extend around their ideal grid centres. The anchors that can overlap a GT then lie in one
window of each (level, shape), and only those are visited: O(R + sum over GTs of their window
sizes) time, O(N*R + N*M + R) memory, never an M x R matrix. Levels that are not grids (arbitrary
or per-image promoted anchors, ``grid=False``) are scanned anchor by anchor, same memory bound.
Results are identical on every path. The ``_reference`` functions are the dense O(N*M*R)
PyTorch code the kernels replace, and the specification.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from ._dispatch import dispatch
from ._validation import (
    as_float_boxes,
    as_levels,
    check_finite,
    check_gt_values,
    check_gts,
    check_same_device,
    device_of,
)

__all__ = ["max_iou_match", "topn_iou_match"]


def _validate(anchors, gt_boxes, gt_counts, num_anchors_per_level, values):
    """Anchors, GTs and levels as the two ops' schemas take them, validated."""
    anchors = as_float_boxes(anchors, "anchors", "(R, 4) or (N, R, 4)", (2, 3))
    gt_boxes, gt_counts = check_gts(gt_boxes, gt_counts, values=False)
    N = gt_boxes.shape[0]
    if anchors.dim() == 3 and anchors.shape[0] != N:
        raise ValueError(
            f"per-image anchors must have shape (N, R, 4) with N = gt_boxes.shape[0] = {N}, got "
            f"{tuple(anchors.shape)}"
        )
    check_same_device(gt_boxes.device, anchors=anchors)
    R = anchors.shape[-2]
    levels = [] if num_anchors_per_level is None else as_levels(num_anchors_per_level, R)
    if values:
        check_finite(anchors, "anchors holds non-finite coordinates")
        check_gt_values(gt_boxes, gt_counts)
    return anchors, gt_boxes, gt_counts, levels


def _validate_matcher(thresholds, labels):
    try:
        thresholds = [float(t) for t in thresholds]
        labels = [int(x) for x in labels]
    except (TypeError, ValueError):
        raise ValueError(
            f"thresholds must be a sequence of floats and labels of ints, got {thresholds!r}, "
            f"{labels!r}"
        ) from None
    if not thresholds:
        raise ValueError("thresholds must not be empty (detectron2's Matcher needs one)")
    if not thresholds[0] > 0:
        raise ValueError(f"thresholds[0] must be > 0 (as detectron2's Matcher), got {thresholds}")
    if any(not (a <= b) for a, b in zip(thresholds[:-1], thresholds[1:])):
        raise ValueError(f"thresholds must be sorted in increasing order, got {thresholds}")
    if len(labels) != len(thresholds) + 1:
        raise ValueError(
            f"labels must have len(thresholds) + 1 = {len(thresholds) + 1} values, got {labels}"
        )
    if any(x not in (-1, 0, 1) for x in labels):
        raise ValueError(f"labels must be -1, 0 or 1, got {labels}")
    return thresholds, labels


def _check_grid(grid):
    if not isinstance(grid, bool):
        raise ValueError(f"grid must be True (recognise grids) or False (exhaustive), got {grid!r}")
    return grid


@torch.no_grad()
def max_iou_match(
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_counts: torch.Tensor,
    num_anchors_per_level: Optional[Sequence[int]] = None,
    *,
    thresholds: Sequence[float] = (0.4, 0.5),
    labels: Sequence[int] = (0, -1, 1),
    allow_low_quality_matches: bool = True,
    grid: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """detectron2's ``Matcher(thresholds, labels, allow_low_quality_matches)`` applied to
    ``pairwise_iou(gt_boxes[n, :gt_counts[n]], anchors)`` for every image (module docstring).

    Args:
        anchors: (R, 4) shared, or (N, R, 4) per image.
        gt_boxes: (N, M, 4) padded; gt_counts: (N,).
        num_anchors_per_level: L ints summing to R (detectron2's levels); optional: without it the
            kernels find the levels themselves. Never changes the result, only the speed.
        thresholds, labels, allow_low_quality_matches: as detectron2's ``Matcher`` (defaults:
            RetinaNet's).
        grid: True: visit only the window of each GT on levels recognised as grids; False: scan
            every anchor per GT (same results, for testing and for unusual layouts).

    Returns:
        matched_idx (N, R) int64 (the best GT; 0 where no GT overlaps), match_labels (N, R) int8
        (Matcher labels: 1 positive, 0 negative, -1 ignore), max_iou (N, R) float32.
    """
    thresholds, labels = _validate_matcher(thresholds, labels)
    grid = _check_grid(grid)
    return dispatch(
        "max_iou_match",
        device_of(gt_boxes, "gt_boxes", "(N, M, 4)"),
        lambda values: (
            *_validate(anchors, gt_boxes, gt_counts, num_anchors_per_level, values),
            thresholds,
            labels,
            bool(allow_low_quality_matches),
            grid,
        ),
    )


@torch.no_grad()
def topn_iou_match(
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_counts: torch.Tensor,
    topn: int,
    num_anchors_per_level: Optional[Sequence[int]] = None,
    *,
    grid: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per GT the ``topn`` anchors of highest IoU; conflicts to the highest IoU, then the lowest
    GT index (module docstring).

    Args:
        anchors: (R, 4) shared, or (N, R, 4) per image.
        gt_boxes: (N, M, 4) padded; gt_counts: (N,).
        topn: anchors per GT (>= 0; 0 selects nothing).
        num_anchors_per_level, grid: as :func:`max_iou_match` (speed only).

    Returns:
        matched_gt (N, R) int64 (-1 = not selected), iou (N, R) float32 (IoU with that GT, 0 for
        -1).
    """
    grid = _check_grid(grid)
    if isinstance(topn, bool) or not isinstance(topn, int) or topn < 0:
        raise ValueError(f"topn must be an int >= 0, got {topn!r}")
    return dispatch(
        "topn_iou_match",
        device_of(gt_boxes, "gt_boxes", "(N, M, 4)"),
        lambda values: (
            *_validate(anchors, gt_boxes, gt_counts, num_anchors_per_level, values),
            topn,
            grid,
        ),
    )
