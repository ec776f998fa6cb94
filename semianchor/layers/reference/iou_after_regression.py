"""Pure-PyTorch specification of :func:`~semianchor.layers.iou_after_regression`."""

from __future__ import annotations

import torch

from ..boxes import DEFAULT_SCALE_CLAMP, box_area, decode_boxes, pairwise_iou_giou

__all__ = ["iou_after_regression_reference"]


@torch.no_grad()
def iou_after_regression_reference(
    anchors,
    regression,
    gt_boxes,
    gt_counts,
    matched_gt=None,
    box_coder="deltas",
    weights=(1.0, 1.0, 1.0, 1.0),
    scale_clamp=DEFAULT_SCALE_CLAMP,
    ltrb_scale=None,
):
    """Pure-PyTorch specification of :func:`~semianchor.layers.iou_after_regression` (dense:
    N x R x M when ``matched_gt`` is None). Inputs are assumed validated (float32 / int64). The
    arguments are the op's schema arguments in the schema's order, so the function is also the
    op's reference entry (:data:`~semianchor.layers.reference.OPS`)."""
    pred = decode_boxes(
        anchors,
        regression.float(),
        box_coder=box_coder,
        weights=weights,
        scale_clamp=scale_clamp,
        ltrb_scale=ltrb_scale,
    )
    N, R = pred.shape[:2]
    M = gt_boxes.shape[1]
    finite = torch.isfinite(pred).all(dim=-1)  # (N, R)
    area_p = box_area(pred)
    area_g = box_area(gt_boxes)  # (N, M)
    valid_gt = torch.arange(M, device=pred.device)[None, :] < gt_counts[:, None]  # (N, M)
    if matched_gt is None:
        if M == 0:
            index = torch.full((N, R), -1, dtype=torch.long, device=pred.device)
        else:
            iou_all, _ = pairwise_iou_giou(
                pred[:, :, None],
                area_p[:, :, None],
                gt_boxes[:, None],
                area_g[:, None],
                with_giou=False,
            )  # (N, R, M)
            iou_all = torch.where(finite[:, :, None], iou_all, torch.zeros_like(iou_all))
            iou_all = torch.where(valid_gt[:, None, :], iou_all, torch.full_like(iou_all, -1.0))
            index = iou_all.argmax(dim=-1)  # first maximal value: ties -> lowest GT index
            index = torch.where(gt_counts[:, None] > 0, index, torch.full_like(index, -1))
    else:
        index = matched_gt
    ok = index >= 0
    safe = index.clamp(min=0)
    if M == 0:
        g = torch.zeros_like(pred)
        ag = torch.zeros_like(area_p)
    else:
        g = torch.gather(gt_boxes, 1, safe[..., None].expand(N, R, 4))
        ag = torch.gather(area_g, 1, safe)
    iou, giou = pairwise_iou_giou(pred, area_p, g, ag)
    keep = ok & finite
    iou = torch.where(keep, iou, torch.zeros_like(iou))
    giou = torch.where(keep, giou, torch.full_like(giou, -1.0))
    return pred, iou, giou, index
