"""Soft-NMS (Bodla et al., "Soft-NMS -- Improving Object Detection With One Line of Code", ICCV
2017, Algorithm 1), per class, as the ``torch.ops.semianchor.soft_nms`` operator.

Legend: R boxes, P kept boxes. Boxes are XYXY in absolute pixels. Neither detectron2 nor
torchvision has soft-NMS; PADet's inference uses it per class (linear, N_t = 0.3, top 300).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ._dispatch import dispatch
from ._validation import (
    as_float_boxes,
    as_index_tensor,
    check_finite,
    check_same_device,
    device_of,
)

__all__ = ["soft_nms", "SOFT_NMS_METHODS"]

SOFT_NMS_METHODS = ("linear", "gaussian", "hard")


def _validate(boxes, scores, classes, method, iou_threshold, sigma, min_score, max_kept, values):
    """The schema arguments of ``torch.ops.semianchor.soft_nms``, validated."""
    boxes = as_float_boxes(boxes, "boxes", "(R, 4)", (2,))
    R = boxes.shape[0]
    if not isinstance(scores, torch.Tensor):
        raise ValueError(
            f"scores must be a torch.Tensor of shape (R,), got {type(scores).__name__}"
        )
    if not scores.is_floating_point():
        raise ValueError(f"scores must be a floating-point tensor, got {scores.dtype}")
    if scores.shape != (R,):
        raise ValueError(f"scores must have shape (R,) = ({R},), got {tuple(scores.shape)}")
    scores = scores.float()
    if classes is not None:
        classes = as_index_tensor(classes, "classes")
        if classes.shape != (R,):
            raise ValueError(f"classes must have shape (R,) = ({R},), got {tuple(classes.shape)}")
    check_same_device(boxes.device, scores=scores, classes=classes)
    if method not in SOFT_NMS_METHODS:
        raise ValueError(f"method must be one of {SOFT_NMS_METHODS}, got {method!r}")
    iou_threshold, sigma, min_score = float(iou_threshold), float(sigma), float(min_score)
    if not math.isfinite(iou_threshold):
        raise ValueError(f"iou_threshold must be finite, got {iou_threshold}")
    # sigma is used as a float32: one that rounds to 0 would give exp(-0 / 0) = NaN at IoU 0
    if not (math.isfinite(sigma) and float(torch.tensor(sigma, dtype=torch.float32)) > 0):
        raise ValueError(f"sigma must be finite and > 0 (also as a float32), got {sigma}")
    if not (math.isfinite(min_score) and min_score >= 0):
        raise ValueError(f"min_score must be finite and >= 0, got {min_score}")
    if isinstance(max_kept, bool) or not isinstance(max_kept, int) or max_kept < -1:
        raise ValueError(f"max_kept must be an int, -1 (all) or >= 0, got {max_kept!r}")
    if values:
        check_finite(boxes, "boxes holds non-finite coordinates")
        check_finite(scores, "scores holds non-finite values")
    return boxes, scores, classes, method, iou_threshold, sigma, min_score, max_kept


@torch.no_grad()
def soft_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    classes: Optional[torch.Tensor] = None,
    *,
    method: str = "linear",
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    min_score: float = 0.001,
    max_kept: int = -1,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS per class: decay, rather than discard, the scores of boxes overlapping a kept one.

    Algorithm 1 of Bodla et al. (2017) with mmcv's conventions, run independently per class
    (boxes of different classes never interact, as ``torchvision.ops.batched_nms``):

    1. boxes whose score is below ``min_score`` are dropped;
    2. pick the live box with the highest current score (ties -> lowest index) and keep it with
       that score;
    3. rescore every other live box of its class, with ``iou`` its IoU with the kept box:
       ``"linear"``: ``score *= 1 - iou`` if ``iou >= iou_threshold`` (mmcv's ``>=``; Detectron1
       and the authors' code use ``>``, which only differs at IoU exactly N_t);
       ``"gaussian"``: ``score *= exp(-iou**2 / sigma)`` (every box: the factor is 1 at IoU 0);
       ``"hard"``: ``score = 0`` if ``iou >= iou_threshold`` (greedy NMS when ``min_score > 0``);
       then drop the boxes whose new score is below ``min_score``;
    4. repeat from 2 until no live box is left or ``max_kept`` boxes are kept.

    Args:
        boxes: (R, 4) XYXY boxes (fp16 / bf16 / fp64 are computed in fp32).
        scores: (R,) scores (finite).
        classes: (R,) integer class per box, or None (one class).
        method: ``"linear"``, ``"gaussian"`` or ``"hard"``.
        iou_threshold: N_t of the linear and hard methods.
        sigma: > 0, the Gaussian method's sigma.
        min_score: >= 0; a box is dropped once its (initial or decayed) score is below it.
        max_kept: at most this many boxes are returned over all classes (the highest-scoring);
            -1: all.

    Returns:
        keep: (P,) int64 indices of the kept boxes, in decreasing order of updated score (ties ->
            lowest index), i.e. the pick order of one Algorithm 1 run over all classes;
        scores: (P,) float32, their updated scores (the score each had when it was picked).

    IoU follows detectron2 (no +1 on widths; 0 when the union is empty, e.g. two zero-area
    boxes) and is computed in float32 with the same operations as
    :func:`~semianchor.layers.pairwise_iou_giou`. ``iou_threshold``, ``sigma`` and ``min_score``
    are rounded to float32 and every comparison and product is float32 (so an IoU of exactly
    0.7 meets ``iou_threshold=0.7``); ``exp`` is evaluated in float64 and rounded once. The
    CPU / CUDA kernels and :func:`~semianchor.layers.soft_nms_reference` therefore return
    identical results. Kernels: O(R) memory, O(sum over classes of n_c * picks_c) time (at most
    O(R^2) for one class). Not differentiable.
    """
    return dispatch(
        "soft_nms",
        device_of(boxes, "boxes", "(R, 4)"),
        lambda values: _validate(
            boxes, scores, classes, method, iou_threshold, sigma, min_score, max_kept, values
        ),
    )
