"""Box coders: how a dense head's 4 regression outputs map to boxes, and back.

``DeltaBoxCoder``: Detectron2's ``Box2BoxTransform`` parameterisation (dx, dy, dw, dh) with
per-coordinate weights and a clamp on dw/dh. ``LTRBBoxCoder``: FCOS-style distances from the
anchor centre to the four sides, in units of the anchor's stride. ``decode`` is differentiable
(used by the losses); the kernels reproduce it exactly for assignment (``kernel_kwargs``).
"""

import math
from typing import Sequence

import torch
from torch import Tensor

from ..layers import decode_boxes

__all__ = ["DeltaBoxCoder", "LTRBBoxCoder", "build_box_coder"]

_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class DeltaBoxCoder:
    box_coder = "deltas"

    def __init__(
        self,
        *,
        weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        scale_clamp: float = _DEFAULT_SCALE_CLAMP,
    ):
        if len(weights) != 4:
            raise ValueError(f"DeltaBoxCoder weights must have 4 values, got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = float(scale_clamp)

    def kernel_kwargs(self, anchor_strides: Tensor):
        return dict(box_coder="deltas", weights=self.weights, scale_clamp=self.scale_clamp)

    def decode(self, anchors: Tensor, regression: Tensor, anchor_strides: Tensor) -> Tensor:
        """anchors (R, 4) or (N, R, 4), regression (N, R, 4) -> boxes (N, R, 4)."""
        return decode_boxes(anchors, regression, **self.kernel_kwargs(anchor_strides))

    def encode(self, anchors: Tensor, boxes: Tensor, anchor_strides: Tensor) -> Tensor:
        """Inverse of decode: the regression target of ``boxes`` (.., R, 4) w.r.t. ``anchors``."""
        aw = (anchors[..., 2] - anchors[..., 0]).clamp(min=1e-6)
        ah = (anchors[..., 3] - anchors[..., 1]).clamp(min=1e-6)
        ax, ay = anchors[..., 0] + 0.5 * aw, anchors[..., 1] + 0.5 * ah
        bw = (boxes[..., 2] - boxes[..., 0]).clamp(min=1e-6)
        bh = (boxes[..., 3] - boxes[..., 1]).clamp(min=1e-6)
        bx, by = boxes[..., 0] + 0.5 * bw, boxes[..., 1] + 0.5 * bh
        wx, wy, ww, wh = self.weights
        return torch.stack(
            [
                wx * (bx - ax) / aw,
                wy * (by - ay) / ah,
                ww * torch.log(bw / aw),
                wh * torch.log(bh / ah),
            ],
            dim=-1,
        )

    def __repr__(self):
        return f"DeltaBoxCoder(weights={self.weights}, scale_clamp={self.scale_clamp:.3f})"


class LTRBBoxCoder:
    """Distances (l, t, r, b) from the anchor centre, divided by the anchor's stride."""

    box_coder = "ltrb"

    def kernel_kwargs(self, anchor_strides: Tensor):
        return dict(box_coder="ltrb", ltrb_scale=anchor_strides)

    def decode(self, anchors: Tensor, regression: Tensor, anchor_strides: Tensor) -> Tensor:
        return decode_boxes(anchors, regression, **self.kernel_kwargs(anchor_strides))

    def encode(self, anchors: Tensor, boxes: Tensor, anchor_strides: Tensor) -> Tensor:
        cx = (anchors[..., 0] + anchors[..., 2]) * 0.5
        cy = (anchors[..., 1] + anchors[..., 3]) * 0.5
        d = torch.stack(
            [cx - boxes[..., 0], cy - boxes[..., 1], boxes[..., 2] - cx, boxes[..., 3] - cy], dim=-1
        )
        return d / anchor_strides[..., None]

    def __repr__(self):
        return "LTRBBoxCoder()"


def build_box_coder(
    name: str, weights=(1.0, 1.0, 1.0, 1.0), scale_clamp: float = _DEFAULT_SCALE_CLAMP
):
    if name == "deltas":
        return DeltaBoxCoder(weights=weights, scale_clamp=scale_clamp)
    if name == "ltrb":
        return LTRBBoxCoder()
    raise ValueError(f"unknown box coder {name!r}: expected 'deltas' or 'ltrb'")
