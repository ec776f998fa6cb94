"""IoU / GIoU of the decoded boxes with the GTs, decoding included, in one pass (the decoding
alone: :func:`~semianchor.layers.decode_boxes`).

Legend: N images, R anchors (levels concatenated), M padded GTs per image. Boxes are XYXY in
absolute pixels. GTs are padded: ``gt_boxes`` (N, M, 4) with ``gt_counts`` (N,) valid rows per
image; rows m >= gt_counts[n] are padding and never read.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from ._dispatch import dispatch
from ._validation import (
    as_float_boxes,
    as_index_tensor,
    check_finite,
    check_gt_values,
    check_gts,
    check_matched_gt,
    check_same_device,
    device_of,
)
from .boxes import DEFAULT_SCALE_CLAMP

__all__ = ["iou_after_regression"]


def _validate(
    anchors,
    regression,
    gt_boxes,
    gt_counts,
    matched_gt,
    box_coder,
    weights,
    scale_clamp,
    ltrb_scale,
    values,
):
    """The schema arguments of ``torch.ops.semianchor.iou_after_regression``, validated."""
    regression = as_float_boxes(regression, "regression", "(N, R, 4)", (3,))
    N, R = regression.shape[:2]
    anchors = as_float_boxes(anchors, "anchors", "(R, 4) or (N, R, 4)", (2, 3))
    if anchors.shape[:-1] not in ((R,), (N, R)):
        raise ValueError(
            f"anchors must have shape (R, 4) or (N, R, 4) with (N, R) = {(N, R)} from regression, "
            f"got {tuple(anchors.shape)}"
        )
    gt_boxes, gt_counts = check_gts(gt_boxes, gt_counts, num_images=N, values=False)
    if box_coder not in ("deltas", "ltrb"):
        raise ValueError(f"box_coder must be 'deltas' or 'ltrb', got {box_coder!r}")
    weights = [float(w) for w in weights]
    if len(weights) != 4 or any(w == 0 or not math.isfinite(w) for w in weights):
        raise ValueError(f"weights must be 4 finite non-zero numbers, got {weights}")
    if ltrb_scale is not None:
        if not isinstance(ltrb_scale, torch.Tensor) or ltrb_scale.shape != (R,):
            raise ValueError(f"ltrb_scale must be a tensor of shape (R,) = ({R},)")
        ltrb_scale = ltrb_scale.float()
    if matched_gt is not None:
        matched_gt = as_index_tensor(matched_gt, "matched_gt")
        if matched_gt.shape != (N, R):
            raise ValueError(
                f"matched_gt must have shape (N, R) = {(N, R)}, got {tuple(matched_gt.shape)}"
            )
    check_same_device(
        regression.device,
        anchors=anchors,
        gt_boxes=gt_boxes,
        matched_gt=matched_gt,
        ltrb_scale=ltrb_scale,
    )
    if values:
        check_finite(anchors, "anchors holds non-finite coordinates")
        check_gt_values(gt_boxes, gt_counts)
        if matched_gt is not None:
            check_matched_gt(matched_gt, gt_counts)
    return (
        anchors,
        regression,
        gt_boxes,
        gt_counts,
        matched_gt,
        box_coder,
        weights,
        float(scale_clamp),
        ltrb_scale,
    )


@torch.no_grad()
def iou_after_regression(
    anchors: torch.Tensor,
    regression: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_counts: torch.Tensor,
    matched_gt: Optional[torch.Tensor] = None,
    *,
    box_coder: str = "deltas",
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    scale_clamp: float = DEFAULT_SCALE_CLAMP,
    ltrb_scale: Optional[torch.Tensor] = None,
):
    """Decode ``regression`` against ``anchors`` and compare the boxes with the GTs, in one pass.

    Args:
        anchors: (R, 4) shared by the images, or (N, R, 4).
        regression: (N, R, 4) deltas or ltrb distances (see
            :func:`~semianchor.layers.decode_boxes`).
        gt_boxes: (N, M, 4) padded GTs; gt_counts: (N,) valid GTs per image.
        matched_gt: (N, R) int64, -1 or a valid GT index per anchor. Given: IoU/GIoU of each
            decoded box with that GT (rows with -1: iou 0, giou -1, gt_index -1). None: ``iou`` is
            the max over the image's valid GTs and ``gt_index`` its argmax (ties -> lowest GT
            index), ``giou`` is with that GT; an image without GTs gives iou 0, giou -1,
            gt_index -1.
        box_coder, weights, scale_clamp, ltrb_scale: as :func:`~semianchor.layers.decode_boxes`.

    Returns:
        pred_boxes (N, R, 4) float32, iou (N, R) float32, giou (N, R) float32,
        gt_index (N, R) int64.

    Rules beyond the above: IoU of zero-area boxes is 0 (never NaN); a decoded box with a
    non-finite coordinate (inf/NaN regression) has iou 0 and giou -1 with every GT (so in the
    max mode gt_index is 0, the lowest valid GT). Not differentiable (assignment only); fp16 /
    bf16 inputs are computed in fp32. Memory: O(N*R + N*M) in the kernels (no N x R x M
    intermediate); the reference is dense.
    """
    return dispatch(
        "iou_after_regression",
        device_of(regression, "regression", "(N, R, 4)"),
        lambda values: _validate(
            anchors,
            regression,
            gt_boxes,
            gt_counts,
            matched_gt,
            box_coder,
            weights,
            scale_clamp,
            ltrb_scale,
            values,
        ),
    )
