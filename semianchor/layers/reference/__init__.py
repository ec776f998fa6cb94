"""The pure-PyTorch references of the :mod:`semianchor.layers` ops: the specification, what the
tests and the kernels' self-check compare the compiled kernels with, and the fallback where a
kernel is missing. Dense and slow; they assume validated inputs (the wrappers validate), except
:func:`deform_conv2d_reference`.

:data:`OPS` maps each ``torch.ops.semianchor`` op name to its reference called with the op's
schema arguments, so a validated call runs on either the same way.
"""

from typing import Callable, Dict

from .atss import (
    atss_assign_op,
    atss_assign_reference,
    atss_candidate_stats_reference,
    atss_candidates_op,
    atss_candidates_reference,
    atss_threshold_reference,
)
from .deform_conv import deform_conv2d_reference
from .iou_after_regression import iou_after_regression_reference
from .max_iou_match import (
    max_iou_match_op,
    max_iou_match_reference,
    topn_iou_match_op,
    topn_iou_match_reference,
)
from .soft_nms import soft_nms_op, soft_nms_reference

__all__ = [
    "OPS",
    "atss_assign_reference",
    "atss_candidate_stats_reference",
    "atss_candidates_reference",
    "atss_threshold_reference",
    "deform_conv2d_reference",
    "iou_after_regression_reference",
    "max_iou_match_reference",
    "soft_nms_reference",
    "topn_iou_match_reference",
]

OPS: Dict[str, Callable] = {
    "iou_after_regression": iou_after_regression_reference,
    "atss_candidates": atss_candidates_op,
    "atss_assign": atss_assign_op,
    "max_iou_match": max_iou_match_op,
    "topn_iou_match": topn_iou_match_op,
    "soft_nms": soft_nms_op,
}
