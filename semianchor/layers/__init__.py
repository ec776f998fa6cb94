"""Label-assignment operators: a public wrapper per op (compiled kernel from ``semianchor._C``
when it has one for the device, else the pure-PyTorch ``*_reference`` twin with a one-time
warning; :mod:`._dispatch`), the references themselves (:mod:`.reference`), which are the
specification and the test oracle, and the box math and anchor-layout helpers they share."""

from .anchor_layout import infer_level_grids, iou_match_levels, num_candidates
from .atss import atss_assign, atss_candidate_stats, atss_candidates
from .boxes import box_area, decode_boxes, pairwise_iou_d2, pairwise_iou_giou
from .deform_conv import DEFORM_CONV_IMPLS, deform_conv2d
from .iou_after_regression import iou_after_regression
from .max_iou_match import max_iou_match, topn_iou_match
from .reference import (
    atss_assign_reference,
    atss_candidate_stats_reference,
    atss_candidates_reference,
    deform_conv2d_reference,
    iou_after_regression_reference,
    max_iou_match_reference,
    soft_nms_reference,
    topn_iou_match_reference,
)
from .soft_nms import SOFT_NMS_METHODS, soft_nms

__all__ = [
    "atss_assign",
    "atss_assign_reference",
    "atss_candidate_stats",
    "atss_candidate_stats_reference",
    "atss_candidates",
    "atss_candidates_reference",
    "box_area",
    "DEFORM_CONV_IMPLS",
    "deform_conv2d",
    "deform_conv2d_reference",
    "decode_boxes",
    "infer_level_grids",
    "iou_match_levels",
    "iou_after_regression",
    "iou_after_regression_reference",
    "max_iou_match",
    "max_iou_match_reference",
    "num_candidates",
    "pairwise_iou_d2",
    "pairwise_iou_giou",
    "topn_iou_match",
    "topn_iou_match_reference",
    "SOFT_NMS_METHODS",
    "soft_nms",
    "soft_nms_reference",
]
