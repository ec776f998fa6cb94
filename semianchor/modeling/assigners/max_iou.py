"""The classic max-IoU rule (RetinaNet / SSD / RPN), behind the LabelAssigner interface."""

from typing import Sequence

import torch

from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, pairwise_iou

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
        return f"thresholds={m.thresholds[1:-1]}, labels={m.labels}, low_quality={m.allow_low_quality_matches}"

    def assign(self, inputs: AssignInputs) -> AssignResult:
        N, R = inputs.num_images, inputs.num_anchors
        matched = torch.full((N, R), -1, dtype=torch.int64, device=inputs.anchors.device)
        ious = torch.zeros((N, R), dtype=torch.float32, device=inputs.anchors.device)
        for i in range(N):
            m = int(inputs.gt_counts[i])
            if m == 0:
                continue
            iou = pairwise_iou(
                Boxes(inputs.gt_boxes[i, :m]), Boxes(inputs.image_anchors(i))
            )  # (M, R)
            idx, match_labels = self.matcher(iou)
            ious[i] = iou.max(dim=0).values
            matched[i] = torch.where(match_labels == 1, idx, torch.where(match_labels == 0, -1, -2))
        return AssignResult.from_matches(
            matched, inputs.gt_classes, inputs.num_classes, extras={"max_iou": ious}
        )
