"""Box math in pure PyTorch: decoding, areas, IoU / GIoU, anchor centres.

The same operations, in the same order, as the kernels' ``csrc/box_math.h``, so that the
references built on them (:mod:`semianchor.layers.reference`) and the kernels agree bit for bit.
Boxes are XYXY in absolute pixels.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

__all__ = [
    "DEFAULT_SCALE_CLAMP",
    "anchor_centers",
    "box_area",
    "decode_boxes",
    "pairwise_iou_d2",
    "pairwise_iou_giou",
]

DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _exp_via_double(x: torch.Tensor) -> torch.Tensor:
    # exp in float64, rounded once: identical on every backend (the C++ and CUDA kernels do the
    # same), within 1 ulp of detectron2's float exp.
    return torch.exp(x.double()).to(x.dtype)


def decode_boxes(
    anchors: torch.Tensor,
    regression: torch.Tensor,
    *,
    box_coder: str = "deltas",
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    scale_clamp: float = DEFAULT_SCALE_CLAMP,
    ltrb_scale: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Decode regression outputs against anchors. Pure PyTorch, differentiable.

    Args:
        anchors: (R, 4) or (N, R, 4) XYXY.
        regression: (N, R, 4) (any leading shape broadcastable with the anchors works).
        box_coder: ``"deltas"``: detectron2 ``Box2BoxTransform.apply_deltas``: the anchor centre
            is ``x1 + 0.5 * w``; ``dx/wx, dy/wy`` shift it by the anchor size, ``dw/ww, dh/wh`` are
            clamped above at ``scale_clamp`` and exponentiated (``exp`` evaluated in float64 and
            rounded once, so every backend agrees bit-for-bit; at most 1 ulp from detectron2).
            ``"ltrb"``: FCOS-style distances from the anchor centre ``((x1+x2)/2, (y1+y2)/2)``:
            ``(cx - l*s, cy - t*s, cx + r*s, cy + b*s)``.
        weights: (wx, wy, ww, wh) of ``Box2BoxTransform`` (``"deltas"`` only).
        scale_clamp: upper clamp of dw, dh (``"deltas"`` only).
        ltrb_scale: (R,) per-anchor unit of the distances (e.g. the level stride), or None for 1.

    Returns:
        (N, R, 4) decoded XYXY boxes, in the dtype of ``regression``.
    """
    a = anchors.to(regression.dtype)
    if box_coder == "deltas":
        widths = a[..., 2] - a[..., 0]
        heights = a[..., 3] - a[..., 1]
        ctr_x = a[..., 0] + 0.5 * widths
        ctr_y = a[..., 1] + 0.5 * heights
        wx, wy, ww, wh = (float(w) for w in weights)
        dx = regression[..., 0] / wx
        dy = regression[..., 1] / wy
        dw = (regression[..., 2] / ww).clamp(max=scale_clamp)
        dh = (regression[..., 3] / wh).clamp(max=scale_clamp)
        pred_ctr_x = dx * widths + ctr_x
        pred_ctr_y = dy * heights + ctr_y
        pred_w = _exp_via_double(dw) * widths
        pred_h = _exp_via_double(dh) * heights
        return torch.stack(
            (
                pred_ctr_x - 0.5 * pred_w,
                pred_ctr_y - 0.5 * pred_h,
                pred_ctr_x + 0.5 * pred_w,
                pred_ctr_y + 0.5 * pred_h,
            ),
            dim=-1,
        )
    if box_coder == "ltrb":
        cx = (a[..., 0] + a[..., 2]) * 0.5
        cy = (a[..., 1] + a[..., 3]) * 0.5
        d = regression if ltrb_scale is None else regression * ltrb_scale.to(regression)[:, None]
        return torch.stack((cx - d[..., 0], cy - d[..., 1], cx + d[..., 2], cy + d[..., 3]), dim=-1)
    raise ValueError(f"box_coder must be 'deltas' or 'ltrb', got {box_coder!r}")


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of XYXY boxes, with negative widths / heights counted as 0."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def pairwise_iou_giou(a, area_a, b, area_b, *, with_giou: bool = True):
    """Element-wise (broadcast) IoU and GIoU of boxes ``a`` and ``b`` given their areas.

    Modern convention (no +1 on widths). IoU is 0 when the union is empty (two zero-area boxes:
    0/0 guarded, never NaN). GIoU = IoU - (|C| - |A u B|) / |C| with C the enclosing box; GIoU =
    IoU when |C| = 0. Same operation order as the kernels (semianchor/layers/csrc/box_math.h), so
    results are bit-identical."""
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    union = area_a + area_b - inter
    iou = torch.where(union > 0, inter / union, torch.zeros_like(inter))
    if not with_giou:
        return iou, None
    cw = (torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])).clamp(min=0)
    ch = (torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])).clamp(min=0)
    area_c = cw * ch
    giou = torch.where(area_c > 0, iou - (area_c - union) / area_c, iou)
    return iou, giou


def pairwise_iou_d2(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """(M, 4) x (R, 4) -> (M, R) float32 IoU, operation for operation detectron2's
    ``pairwise_iou`` (unclamped areas, 0 where the intersection is not positive)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    wh = torch.min(boxes1[:, None, 2:], boxes2[:, 2:]) - torch.max(
        boxes1[:, None, :2], boxes2[:, :2]
    )
    inter = wh.clamp(min=0).prod(dim=2)
    return torch.where(inter > 0, inter / (area1[:, None] + area2 - inter), torch.zeros_like(inter))


def anchor_centers(anchors: torch.Tensor) -> torch.Tensor:
    """(R, 2) float32 centres ``(x1 + x2) * 0.5`` (the kernels use the same expression)."""
    return (anchors[:, :2] + anchors[:, 2:]) * 0.5
