"""Semi-Anchored Detector (SAD; Chen, Qian, Li, "Semi-Anchored Detector for One-Stage Object
Detection", arXiv 2009.04989), Sec. 3: anchor labels, location labels, regression targets and the
dynamic anchor-classification (AC) labels, behind one :class:`LabelAssigner`.

Shape legend: N images, R anchors, R_loc locations (R = sum_l R_loc,l * A), M padded GTs,
K classes, A anchors per location.

Per image, with ``matcher`` the static max-IoU rule on the anchors (IoU before regression):

1. Anchor labels y_{i,k} (Sec. 3.1): ``matcher``'s. Default (choice S2): one threshold 0.5, no
   ignore band, low-quality matches on, so every GT has a positive anchor and Eq. 4 is defined.
2. Location labels (Eq. 4, default): a location is positive iff one of its A anchors is; its
   class is the majority class of its positive anchors; ties go to the class of the tied positive
   anchor with the highest IoU (choice S3; equal IoUs: the lowest anchor index), and that anchor's
   GT is the location's GT g_i. With ``location_gamma`` set, Eq. 1 instead (the Table 4
   ablation): s_i^c = (anchors of class c) / A, background weighted by gamma and classes by
   1 - gamma, argmax, class ties broken as above; background wins a tie with a class (argmax's
   first index). Proposition 1: gamma < 1 / A gives Eq. 4's labels. A location with no positive
   anchor but an ignored one (only with an ignore band in ``matcher``) is ignored (-1).
   Table 3's alternatives (``location_rule``; the paper gives no detail beyond the names, so
   FCOS's own rule, Tian et al. 2019 Sec. 3.1-3.2): "fcos": a location is positive for the GTs
   that contain it and whose largest distance max(l, t, r, b) from it lies in its level's range
   (``fcos_size_ranges``, FCOS's (0, 64], (64, 128], ... on P3-P7), the smallest-area one
   winning; "fcos_shrink": the same, inside the GT's centre region of radius
   ``fcos_center_radius`` x stride only (FCOS's centre sampling, 1.5). The location's GT g_i is
   that GT; the anchor labels still decide regression (R1) and nothing else.
3. Regression targets (the "anchors" set; choice S4): ``regression="anchor"`` (R1, default): an
   anchor regresses iff it is positive and its location is, toward its own GT;
   ``regression="location"`` (R2): every anchor of a positive location regresses toward g_i.
4. AC labels (the "anchor_cls" set, Sec. 3.2, Eq. 2, choice S8), for the anchors of positive
   locations only (others ignored): decode each anchor's (detached) regression, mu = its max IoU
   over the image's GTs, y_hat = 1 iff that GT's class equals the location's class and mu >=
   ``ac_iou_threshold``; mu_hat = (mu / max mu)^sigma with the max over the location's anchors with
   y_hat = 1 (so the best gets 1). A non-finite prediction has mu = 0 (y_hat = 0).

Output sets (labels in the library's convention; the AC set has one class, 0 = "trust this
anchor", 1 = background): ``result`` / ``result["anchors"]`` (N, R) regression targets,
``result["locations"]`` (N, R_loc), ``result["anchor_cls"]`` (N, R) with ``soft_targets`` mu_hat.
``extras``: ``anchor_labels`` (N, R) static labels, ``max_iou`` (N, R) before regression,
``iou_after_regression`` (N, R) mu.
"""

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from ...layers import iou_after_regression
from .base import AssignInputs, AssignResult, LabelAssigner, TargetSet
from .max_iou import MaxIoUAssigner

__all__ = ["SADAssigner", "location_labels", "fcos_location_labels", "ac_soft_targets"]

LOCATION_RULES = ("anchors", "fcos", "fcos_shrink")
FCOS_SIZE_RANGES = ((0.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, 1e8))


def _scatter_max(values: Tensor, index: Tensor, size: int, fill: float) -> Tensor:
    """(N, R) values, (R,) segment index -> (N, size) per-segment max (``fill`` where empty)."""
    out = values.new_full((values.shape[0], size), fill)
    return out.scatter_reduce(1, index.expand_as(values), values, "amax", include_self=True)


def location_labels(
    anchor_labels: Tensor,
    anchor_iou: Tensor,
    location_index: Tensor,
    num_locations: int,
    num_classes: int,
    anchors_per_location: int,
    gamma: Optional[float] = None,
) -> Tuple[Tensor, Tensor]:
    """Eq. 4 (``gamma`` None) or Eq. 1 location labels from anchor labels (module doc, rule 2).

    Args:
        anchor_labels: (N, R) in {-1, 0..K-1, K}; anchor_iou: (N, R) IoU before regression (the
            tie-break); location_index: (R,) location of each anchor; anchors_per_location: A.

    Returns:
        labels (N, R_loc) in {-1, 0..K-1, K} and ``winner`` (N, R_loc) int64: the anchor that
        decided a positive location's class (its GT is the location's GT), -1 otherwise.
    """
    N, R = anchor_labels.shape
    K, L = num_classes, num_locations
    device = anchor_labels.device
    pos = (anchor_labels >= 0) & (anchor_labels < K)
    slot = torch.where(anchor_labels < 0, torch.full_like(anchor_labels, K + 1), anchor_labels)
    counts = torch.zeros((N, L, K + 2), dtype=torch.float32, device=device)
    flat = location_index[None, :] * (K + 2) + slot  # (N, R) index into the (L, K + 2) grid
    counts.view(N, -1).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))
    class_counts = counts[..., :K]
    best_count = class_counts.max(dim=-1).values if K else counts.new_zeros((N, L))
    if gamma is None:  # Eq. 4
        positive = best_count > 0
    else:  # Eq. 1: background wins ties (argmax's first index is the background)
        A = float(anchors_per_location)
        positive = (1.0 - gamma) * best_count / A > gamma * counts[..., K] / A
    # the anchors that may decide: positive, of a majority class, at a positive location
    loc = location_index[None, :].expand(N, R)
    anchor_class_count = torch.gather(counts.view(N, -1), 1, flat)  # count of the anchor's class
    is_majority = pos & (anchor_class_count == torch.gather(best_count, 1, loc))
    candidate = is_majority & torch.gather(positive, 1, loc)
    key = torch.where(
        candidate, anchor_iou.float(), torch.full_like(anchor_iou, -1.0, dtype=torch.float32)
    )
    best_iou = _scatter_max(key, location_index[None, :], L, -1.0)
    tied = candidate & (key == torch.gather(best_iou, 1, loc))
    anchor_idx = torch.arange(R, device=device)[None, :].expand(N, R)
    first = torch.full((N, L), R, dtype=torch.int64, device=device).scatter_reduce(
        1, loc, torch.where(tied, anchor_idx, torch.full_like(anchor_idx, R)), "amin"
    )
    winner = torch.where(first < R, first, torch.full_like(first, -1))
    labels = torch.gather(anchor_labels, 1, winner.clamp(min=0))
    ignored = (best_count == 0) & (counts[..., K + 1] > 0)
    labels = torch.where(winner >= 0, labels, torch.full_like(labels, K))
    labels = torch.where(ignored, torch.full_like(labels, -1), labels)
    return labels, winner


def fcos_location_labels(
    inputs: AssignInputs,
    size_ranges: Sequence[Sequence[float]],
    center_radius: Optional[float] = None,
) -> Tuple[Tensor, Tensor]:
    """FCOS's location labels (module doc, Table 3): (N, R_loc) labels in {0..K-1, K} and
    (N, R_loc) the location's GT (-1 for background). A location is the centre of its anchors.

    Args:
        size_ranges: per level (lo, hi]: the range of max(l, t, r, b) a level regresses.
        center_radius: None ("fcos"), or the centre-sampling radius in strides ("fcos_shrink").
    """
    K, L = inputs.num_classes, inputs.num_locations
    A = inputs.uniform_anchors_per_location("SAD's FCOS location labelling")
    if len(size_ranges) != len(inputs.num_anchors_per_level):
        raise ValueError(
            f"fcos_size_ranges has {len(size_ranges)} levels, the anchors "
            f"{len(inputs.num_anchors_per_level)}"
        )
    device = inputs.gt_boxes.device
    first = torch.arange(L, device=device) * A  # the first anchor of each location
    boxes = inputs.batch_anchors()[:, first].float()  # (N, L, 4)
    centers = (boxes[..., :2] + boxes[..., 2:]) / 2
    level = torch.repeat_interleave(
        torch.arange(len(size_ranges), device=device),
        torch.tensor([int(n) // A for n in inputs.num_anchors_per_level], device=device),
    )
    ranges = torch.tensor([list(r) for r in size_ranges], dtype=torch.float32, device=device)
    lo, hi = ranges[level, 0], ranges[level, 1]  # (L,)
    gt = inputs.gt_boxes.float()[:, None]  # (N, 1, M, 4)
    x, y = centers[..., 0:1], centers[..., 1:2]  # (N, L, 1)
    ltrb = torch.stack([x - gt[..., 0], y - gt[..., 1], gt[..., 2] - x, gt[..., 3] - y], -1)
    inside = ltrb.min(dim=-1).values > 0  # (N, L, M)
    if center_radius is not None:
        stride = inputs.anchor_strides[first].float()[None, :, None] * center_radius  # (1, L, 1)
        cx, cy = (gt[..., 0] + gt[..., 2]) / 2, (gt[..., 1] + gt[..., 3]) / 2
        x0, y0 = torch.maximum(cx - stride, gt[..., 0]), torch.maximum(cy - stride, gt[..., 1])
        x1, y1 = torch.minimum(cx + stride, gt[..., 2]), torch.minimum(cy + stride, gt[..., 3])
        inside = inside & (x > x0) & (y > y0) & (x < x1) & (y < y1)
    reach = ltrb.max(dim=-1).values
    in_range = (reach > lo[None, :, None]) & (reach <= hi[None, :, None])
    valid = inside & in_range & inputs.valid_gt_mask()[:, None, :]
    area = (gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1])  # (N, 1, M)
    area = torch.where(
        valid, area.expand_as(valid), torch.full_like(valid, float("inf"), dtype=torch.float32)
    )
    if area.shape[-1] == 0:
        loc_gt = torch.full(area.shape[:2], -1, dtype=torch.int64, device=device)
    else:
        best_area, loc_gt = area.min(dim=-1)
        loc_gt = torch.where(torch.isfinite(best_area), loc_gt, torch.full_like(loc_gt, -1))
    labels = torch.gather(inputs.gt_classes, 1, loc_gt.clamp(min=0))
    labels = torch.where(loc_gt >= 0, labels, torch.full_like(labels, K))
    return labels, loc_gt


def ac_soft_targets(
    mu: Tensor, y_hat: Tensor, location_index: Tensor, num_locations: int, sigma: float
):
    """Eq. 2: mu_hat = (mu / max_k mu)^sigma over each location's anchors with y_hat = 1; 0 where
    y_hat = 0. (N, R) -> (N, R), values in (0, 1] on y_hat (mu > 0 there)."""
    mu = torch.where(y_hat, mu, torch.zeros_like(mu))
    best = _scatter_max(mu, location_index[None, :], num_locations, 0.0)
    best = torch.gather(best, 1, location_index[None, :].expand_as(mu))
    ratio = (mu / best.clamp(min=1e-12)).clamp(max=1.0)
    return torch.where(y_hat, ratio.pow(sigma), torch.zeros_like(mu))


class SADAssigner(LabelAssigner):
    """SAD's labels (module docstring). Needs ``pred_regression`` and ``box_coder`` (the AC
    labels use the IoU after regression).

    Args:
        matcher: the static anchor rule (default: max-IoU, 0.5, no ignore band, low-quality on).
        location_gamma: None for Eq. 4 (default), else gamma of Eq. 1 (Table 4).
        location_rule: "anchors" (Eq. 4 / Eq. 1, the paper's), "fcos" or "fcos_shrink"
            (Table 3's alternatives; module doc).
        fcos_size_ranges: per level (lo, hi] of max(l, t, r, b) ("fcos*" rules; FCOS's five).
        fcos_center_radius: centre-sampling radius in strides ("fcos_shrink"; FCOS's 1.5).
        regression: "anchor" (R1, default) or "location" (R2), choice S4.
        ac_iou_threshold: IoU after regression at which an anchor's class counts (choice S8: 0.5).
        sigma: exponent of Eq. 2 (paper 0.9; 0 gives binary AC targets, Table 5's "FL").
    """

    requires_predictions = True

    def __init__(
        self,
        *,
        matcher: Optional[LabelAssigner] = None,
        location_gamma: Optional[float] = None,
        location_rule: str = "anchors",
        fcos_size_ranges: Sequence[Sequence[float]] = FCOS_SIZE_RANGES,
        fcos_center_radius: float = 1.5,
        regression: str = "anchor",
        ac_iou_threshold: float = 0.5,
        sigma: float = 0.9,
    ):
        if regression not in ("anchor", "location"):
            raise ValueError(
                f"regression must be 'anchor' (R1) or 'location' (R2), got {regression!r}"
            )
        if location_gamma is not None and not 0.0 <= location_gamma < 1.0:
            raise ValueError(f"location_gamma must be None or in [0, 1), got {location_gamma}")
        if not 0.0 <= sigma <= 1.0:
            raise ValueError(f"sigma must be in [0, 1], got {sigma}")
        if location_rule not in LOCATION_RULES:
            raise ValueError(
                f"location_rule must be one of {LOCATION_RULES}, got {location_rule!r}"
            )
        if location_rule != "anchors" and location_gamma is not None:
            raise ValueError(
                "location_gamma (Eq. 1) applies to the anchors' location rule, "
                f"not {location_rule!r}"
            )
        if any(len(r) != 2 or not r[0] < r[1] for r in fcos_size_ranges):
            raise ValueError(
                f"fcos_size_ranges must be (lo, hi) with lo < hi, got {fcos_size_ranges}"
            )
        if fcos_center_radius <= 0:
            raise ValueError(f"fcos_center_radius must be > 0, got {fcos_center_radius}")
        self.location_rule = location_rule
        self.fcos_size_ranges = [tuple(float(v) for v in r) for r in fcos_size_ranges]
        self.fcos_center_radius = float(fcos_center_radius)
        self.matcher = matcher or MaxIoUAssigner(thresholds=(0.5,), labels=(0, 1))
        self.location_gamma = location_gamma
        self.regression = regression
        self.ac_iou_threshold = float(ac_iou_threshold)
        self.sigma = float(sigma)

    def extra_repr(self):
        return (
            f"matcher={self.matcher!r}, location_gamma={self.location_gamma}, "
            f"location_rule={self.location_rule!r}, "
            f"regression={self.regression!r}, ac_iou_threshold={self.ac_iou_threshold}, "
            f"sigma={self.sigma}"
        )

    def assign(self, inputs: AssignInputs) -> AssignResult:
        K = inputs.num_classes
        static = self.matcher(inputs)
        anchor_iou = static.extras.get(
            "max_iou", torch.zeros_like(static.labels, dtype=torch.float32)
        )
        loc_idx = inputs.location_index()
        L = inputs.num_locations
        loc_labels, winner = location_labels(
            static.labels,
            anchor_iou,
            loc_idx,
            L,
            K,
            inputs.uniform_anchors_per_location("SAD"),
            self.location_gamma,
        )
        loc_gt = torch.where(
            winner >= 0,
            torch.gather(static.matched_gt, 1, winner.clamp(min=0)),
            torch.full_like(winner, -1),
        )
        if self.location_rule != "anchors":
            radius = self.fcos_center_radius if self.location_rule == "fcos_shrink" else None
            loc_labels, loc_gt = fcos_location_labels(inputs, self.fcos_size_ranges, radius)
        locations = TargetSet(matched_gt=loc_gt, labels=loc_labels)
        loc_pos = locations.positive_mask(K)
        at_pos_loc = loc_pos[:, loc_idx]  # (N, R): the anchor's location is positive

        # regression targets (choice S4)
        if self.regression == "anchor":
            reg_pos = static.positive_mask(K) & at_pos_loc
            reg_gt = torch.where(reg_pos, static.matched_gt, torch.full_like(static.matched_gt, -1))
        else:
            reg_pos = at_pos_loc
            reg_gt = torch.where(
                reg_pos, loc_gt[:, loc_idx], torch.full_like(static.matched_gt, -1)
            )
        result = AssignResult.from_matches(reg_gt, inputs.gt_classes, K)

        # dynamic anchor-classification labels (Eq. 2, choice S8)
        _, mu, _, gt_after = iou_after_regression(
            inputs.anchors,
            inputs.pred_regression.float(),
            inputs.gt_boxes,
            inputs.gt_counts,
            None,
            **inputs.box_coder.kernel_kwargs(inputs.anchor_strides),
        )
        mu = torch.nan_to_num(mu, nan=0.0)
        class_after = torch.gather(inputs.gt_classes, 1, gt_after.clamp(min=0))
        y_hat = (
            at_pos_loc
            & (gt_after >= 0)
            & (mu >= self.ac_iou_threshold)
            & (class_after == loc_labels[:, loc_idx])
        )
        mu_hat = ac_soft_targets(mu, y_hat, loc_idx, L, self.sigma)
        ac_labels = torch.where(
            y_hat, torch.zeros_like(static.labels), torch.ones_like(static.labels)
        )
        ac_labels = torch.where(at_pos_loc, ac_labels, torch.full_like(ac_labels, -1))
        result.target_sets["locations"] = locations
        result.target_sets["anchor_cls"] = TargetSet(
            matched_gt=torch.where(y_hat, gt_after, torch.full_like(gt_after, -1)),
            labels=ac_labels,
            soft_targets=mu_hat,
            num_classes=1,
        )
        result.extras.update(
            anchor_labels=static.labels, max_iou=anchor_iou, iou_after_regression=mu
        )
        return result
