"""The classic max-IoU rule (RetinaNet / SSD / RPN), behind the LabelAssigner interface."""

from typing import Sequence

import torch

from detectron2.modeling.matcher import Matcher

from ...layers import max_iou_match
from .base import AssignInputs, AssignResult, LabelAssigner

__all__ = ["MaxIoUAssigner"]


class MaxIoUAssigner(LabelAssigner):
    """Each anchor takes the GT of highest IoU; IoU < thresholds[0] -> labels[0], ... (Detectron2's
    ``Matcher`` semantics: labels 1 = positive, 0 = background, -1 = ignore). With
    ``allow_low_quality_matches`` every GT also claims the anchors of its highest IoU (ties kept),
    so no GT is left without a positive (RetinaNet, Sec. 4; SSD "best anchor per GT").

    Defaults are RetinaNet's: IoU < 0.4 background, [0.4, 0.5) ignored, >= 0.5 positive.
    """

    def __init__(
        self,
        *,
        thresholds: Sequence[float] = (0.4, 0.5),
        labels: Sequence[int] = (0, -1, 1),
        allow_low_quality_matches: bool = True,
    ):
        self.matcher = Matcher(
            list(thresholds), list(labels), allow_low_quality_matches=allow_low_quality_matches
        )

    def extra_repr(self):
        m = self.matcher
        return (
            f"thresholds={m.thresholds[1:-1]}, labels={m.labels}, "
            f"low_quality={m.allow_low_quality_matches}"
        )

    def assign(self, inputs: AssignInputs) -> AssignResult:
        # pairwise_iou + Matcher per image, without the (M, R) IoU matrix (same results).
        m = self.matcher
        idx, match_labels, ious = max_iou_match(
            inputs.anchors,
            inputs.gt_boxes,
            inputs.gt_counts,
            inputs.num_anchors_per_level,
            thresholds=m.thresholds[1:-1],
            labels=m.labels,
            allow_low_quality_matches=m.allow_low_quality_matches,
        )
        matched = torch.where(match_labels == 1, idx, torch.where(match_labels == 0, -1, -2))
        # an image without GTs is all background (the Matcher's empty default would be labels[0])
        has_gt = (inputs.gt_counts > 0).to(matched.device)[:, None]
        matched = torch.where(has_gt, matched, torch.full_like(matched, -1))
        return AssignResult.from_matches(
            matched, inputs.gt_classes, inputs.num_classes, extras={"max_iou": ious}
        )
