"""Loss functions shared by the methods: pure functions, no module state.

All take un-reduced per-element inputs and return un-reduced losses unless ``reduction`` says
otherwise; the detectors normalise (EMA of positives, or sum of weights).
"""

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "centerness_targets",
    "cleanliness_focal_loss",
    "focal_loss",
    "hard_negative_mask",
    "quality_focal_loss",
    "smoothed_focal_loss",
    "iou_loss",
    "smooth_l1_loss",
    "pairwise_aligned_iou",
]


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    raise ValueError(f"unknown reduction {reduction!r}")


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
):
    """Sigmoid focal loss (Lin et al. 2017, Eq. 5), generalised to soft targets t in [0, 1]:
    ``BCE(p, t) * |t - p|^gamma * (alpha * t + (1 - alpha) * (1 - t))``. For t in {0, 1} this is
    exactly RetinaNet's loss; alpha < 0 disables the alpha balance.
    """
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    loss = ce * (targets - p).abs().pow(gamma)
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return _reduce(loss, reduction)


def cleanliness_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Focal BCE with the binary target t replaced by a soft target c (Noisy Anchors, Li et al.
    2020, Eq. 1 with t -> c, Sec. 4 "Soft labels"), un-reduced:
    ``-c * w_p * log(p) - (1 - c) * w_n * log(1 - p)``, ``w_p = alpha * (1 - p)^gamma``,
    ``w_n = (1 - alpha) * p^gamma`` (RetinaNet's focal weights). alpha < 0 drops the alpha
    balance (w_p = (1 - p)^gamma, w_n = p^gamma); gamma = 0 and alpha < 0 give plain soft BCE
    (the RPN's objectness loss). For c in {0, 1} it is RetinaNet's focal loss. Computed in
    float32."""
    logits = logits.float()
    targets = targets.float()
    p = torch.sigmoid(logits)
    # log(p) = -softplus(-x), log(1 - p) = -softplus(x): stable for any finite logit
    pos_term = F.softplus(-logits) * (1.0 - p).pow(gamma)
    neg_term = F.softplus(logits) * p.pow(gamma)
    if alpha >= 0:
        pos_term = pos_term * alpha
        neg_term = neg_term * (1.0 - alpha)
    return targets * pos_term + (1.0 - targets) * neg_term


def quality_focal_loss(logits: Tensor, targets: Tensor, beta: float = 2.0, reduction: str = "none"):
    """Quality focal loss (Li et al. 2020, GFL Eq. 5): ``BCE(p, t) * |t - p|^beta``, no alpha.
    Used by DLA's metric head (DLA Eq. 7) toward m (positives) and 0 (negatives)."""
    return focal_loss(logits, targets, alpha=-1.0, gamma=beta, reduction=reduction)


def smoothed_focal_loss(
    logits: Tensor,
    mu_hat: Tensor,
    positive: Tensor,
    alpha: float = 0.25,
    beta: float = 2.0,
    reduction: str = "none",
):
    """SAD's smoothed focal loss, exactly Eq. 3 of the paper, element-wise:

        L_s = -alpha * |mu_hat - p|^beta * mu_hat * log(p)    if positive (y_hat = 1)
              -(1 - alpha) * p^beta * log(1 - p)               otherwise

    p = sigmoid(logits). The positive term is 0 at p = mu_hat and tends to 0 as p -> 1 (Eq. 3
    has no (1 - mu_hat) * log(1 - p) term: p above mu_hat costs little); it is finite for any
    finite logit (log p through softplus). With mu_hat = 1 it is the focal loss (Table 5's "FL").
    The QFL-style soft focal loss (BCE(p, mu_hat) * |mu_hat - p|^beta, :func:`focal_loss` with
    soft targets) is the library's other ablation. Computed in float32."""
    logits = logits.float()
    mu_hat = mu_hat.float()
    p = torch.sigmoid(logits)
    pos = alpha * (mu_hat - p).abs().pow(beta) * mu_hat * F.softplus(-logits)
    neg = (1.0 - alpha) * p.pow(beta) * F.softplus(logits)
    return _reduce(torch.where(positive, pos, neg), reduction)


def pairwise_aligned_iou(pred: Tensor, target: Tensor, eps: float = 1e-7):
    """IoU and GIoU of aligned boxes (.., 4) XYXY; differentiable. Returns (iou, giou)."""
    px1, py1, px2, py2 = pred.unbind(-1)
    tx1, ty1, tx2, ty2 = target.unbind(-1)
    area_p = (px2 - px1).clamp(min=0) * (py2 - py1).clamp(min=0)
    area_t = (tx2 - tx1).clamp(min=0) * (ty2 - ty1).clamp(min=0)
    iw = (torch.min(px2, tx2) - torch.max(px1, tx1)).clamp(min=0)
    ih = (torch.min(py2, ty2) - torch.max(py1, ty1)).clamp(min=0)
    inter = iw * ih
    union = area_p + area_t - inter
    iou = inter / (union + eps)
    cw = torch.max(px2, tx2) - torch.min(px1, tx1)
    ch = torch.max(py2, ty2) - torch.min(py1, ty1)
    enclose = cw * ch
    giou = iou - (enclose - union) / (enclose + eps)
    return iou, giou


def iou_loss(pred: Tensor, target: Tensor, loss_type: str = "giou", reduction: str = "none"):
    """IoU-family box loss on aligned boxes (.., 4): 'giou' = 1 - GIoU, 'iou' = 1 - IoU,
    'log_iou' = -ln(IoU) (UnitBox, Yu et al. 2016; SAD's box loss), IoU clamped at 1e-6 so a
    box that misses its GT costs ln(1e6) ~ 13.8 instead of infinity."""
    iou, giou = pairwise_aligned_iou(pred.float(), target.float())
    if loss_type == "giou":
        loss = 1.0 - giou
    elif loss_type == "iou":
        loss = 1.0 - iou
    elif loss_type == "log_iou":
        loss = -torch.log(iou.clamp(min=1e-6))
    else:
        raise ValueError(f"unknown IoU loss type {loss_type!r}")
    return _reduce(loss, reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, beta: float, reduction: str = "none"):
    """Smooth L1 (Huber with slope 1); beta = 0 is L1."""
    diff = (input - target).abs()
    if beta < 1e-5:
        loss = diff
    else:
        loss = torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    return _reduce(loss, reduction)


def hard_negative_mask(loss: Tensor, positive: Tensor, negative: Tensor, ratio: float) -> Tensor:
    """Hard-negative mining (SSD, Liu et al. 2016, Sec. 2.2 "Hard negative mining", 3:1): the
    (N, R) mask of the elements a loss is summed over.

    Every positive, and per image (row) the ``ratio`` x max(its positive count, 1) negatives of
    highest ``loss`` (rounded down; ties: lowest index). ``ratio`` <= 0 keeps every negative.
    Elements neither positive nor negative (ignored) are never kept. ``loss`` is only ranked
    (detached), never differentiated.

    Args:
        loss: (N, R) per-element loss.
        positive, negative: (N, R) bool masks, disjoint.
        ratio: negatives kept per positive (SSD, DSSD, RefineDet: 3).
    """
    if ratio <= 0:
        return positive | negative
    key = torch.where(negative, loss.detach(), torch.full_like(loss, -1.0))
    order = key.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(order.shape[1], device=order.device).expand_as(order)
    )
    quota = (positive.sum(dim=1, keepdim=True).clamp(min=1) * ratio).long()
    return positive | (negative & (rank < quota))


def centerness_targets(anchors: Tensor, gt_boxes: Tensor) -> Tensor:
    """FCOS centerness (Tian et al. 2019, Eq. 3) of anchor centres w.r.t. their GT: (.., 4) -> (..).
    Zero for centres outside the box."""
    cx = (anchors[..., 0] + anchors[..., 2]) * 0.5
    cy = (anchors[..., 1] + anchors[..., 3]) * 0.5
    l, t = cx - gt_boxes[..., 0], cy - gt_boxes[..., 1]
    r, b = gt_boxes[..., 2] - cx, gt_boxes[..., 3] - cy
    lr = torch.stack([l, r], -1).clamp(min=0)
    tb = torch.stack([t, b], -1).clamp(min=0)
    ctr = (lr.min(-1).values / lr.max(-1).values.clamp(min=1e-6)) * (
        tb.min(-1).values / tb.max(-1).values.clamp(min=1e-6)
    )
    return ctr.clamp(min=0).sqrt()
