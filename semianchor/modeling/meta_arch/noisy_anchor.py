"""Noisy-Anchor RetinaNet: "Learning from Noisy Anchors for One-stage Object Detection" (Li et al.,
CVPR 2020).

RetinaNet's architecture unchanged (9 anchors, plain 4-conv head, P6/P7 from C5, deltas with
weights 1, smooth-L1 box loss, focal loss); only the anchor labels change, through the
:class:`CleanlinessAssigner` (per-GT top-N anchors, cleanliness soft labels, re-weighting
factors r). Losses (Eq. 5-6), with P positives (A_pos) in the batch:

    L_cls = [sum_{A_pos} r * FL(p, c) + sum_{A_neg} FL(p, 0)] / EMA(P)
    L_reg = sum_{A_pos} r * smooth_l1(deltas, targets) / EMA(P)

FL is the focal-weighted BCE of Eq. 1 with the binary target t replaced by c
(:func:`~semianchor.modeling.losses.cleanliness_focal_loss`); for c in {0, 1} it is RetinaNet's
focal loss. r has mean 1 over A_pos, so ``sum r = P`` and both losses share RetinaNet's
normaliser, the EMA of the positive count (which is |A_pos|, ~N per GT: larger than RetinaNet's,
so the negatives' summed loss is divided by a larger number; the paper keeps RetinaNet's
convention and so do we). In the base's terms: ``cls_loss_weighting="assigner"``,
``box_loss_weighting="assigner"``, ``box_loss_normalizer="positives"`` (the defaults here).

The paper does not state the normaliser P; ``normalizer_type`` chooses it (an EMA in every case):
"positives" (default: |A_pos|), "soft_targets" (the sum of the cleanliness targets c over A_pos,
the normaliser of a soft-label loss such as GFL's), or "retinanet_matched" (the positives
RetinaNet's max-IoU matcher would give on the same anchors and GTs: IoU >= 0.5, plus each GT's
highest-IoU anchors; Detectron2's Matcher([0.4, 0.5], allow_low_quality_matches=True)), which
keeps the negatives' loss on RetinaNet's scale.

Shape legend: N images, R anchors, M padded GTs, K classes, P positives.
"""

from typing import Optional

from torch import Tensor

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, pairwise_iou
from detectron2.utils.events import get_event_storage

from ..assigners import AssignInputs, AssignResult
from ..losses import cleanliness_focal_loss
from .base import AssignmentDetector

__all__ = ["LOSS_NORMALIZERS", "NoisyAnchorRetinaNet", "cleanliness_focal_loss"]

LOSS_NORMALIZERS = ("positives", "soft_targets", "retinanet_matched")


def retinanet_matched_count(inputs: AssignInputs) -> int:
    """Positives of RetinaNet's max-IoU matcher ({0.4, 0.5}, low-quality matches allowed) on the
    anchors and GTs of ``inputs``, summed over the images."""
    matcher = Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)
    total = 0
    for n in range(inputs.num_images):
        count = int(inputs.gt_counts[n])
        if count == 0:
            continue
        anchors = inputs.anchors[n] if inputs.anchors.dim() == 3 else inputs.anchors
        iou = pairwise_iou(Boxes(inputs.gt_boxes[n, :count].float()), Boxes(anchors.float()))
        _, labels = matcher(iou)
        total += int((labels == 1).sum())
    return total


@META_ARCH_REGISTRY.register()
class NoisyAnchorRetinaNet(AssignmentDetector):
    """RetinaNet trained with cleanliness-based soft labels and re-weighting.

    Takes :class:`AssignmentDetector`'s arguments (``assigner`` should be a
    :class:`CleanlinessAssigner`; any assigner works: a binary one gives RetinaNet's losses with
    its labels); the assigner's weights r, when it gives them, weight the positives'
    classification and box losses (Algorithm 1, lines 13-14). Loss keys: ``loss_noisy_cls``,
    ``loss_noisy_box``.
    """

    loss_prefix = "noisy"

    @configurable
    def __init__(
        self,
        *,
        cls_loss_weighting: str = "assigner",
        box_loss_weighting: str = "assigner",
        box_loss_normalizer: str = "positives",
        normalizer_type: str = "positives",
        **kwargs,
    ):
        if normalizer_type not in LOSS_NORMALIZERS:
            raise ValueError(
                f"normalizer_type must be one of {LOSS_NORMALIZERS}, got {normalizer_type!r}"
            )
        super().__init__(
            cls_loss_weighting=cls_loss_weighting,
            box_loss_weighting=box_loss_weighting,
            box_loss_normalizer=box_loss_normalizer,
            **kwargs,
        )
        self.normalizer_type = normalizer_type

    def positives_normalizer(
        self,
        result: AssignResult,
        target_set: str = "anchors",
        name: Optional[str] = None,
        inputs: Optional[AssignInputs] = None,
    ) -> float:
        """The base's EMA of |A_pos| ("positives"), or of the sum of the soft targets, or of the
        RetinaNet-matched count on ``inputs``' anchors and GTs (``normalizer_type``); one value
        per step for every loss."""
        if self.normalizer_type == "positives" or target_set != "anchors":
            return super().positives_normalizer(result, target_set, name, inputs)
        name = name or "loss_normalizer"
        if name not in self._step_normalizers:
            ts = result[target_set]
            pos = ts.positive_mask(self.num_classes)
            if self.normalizer_type == "soft_targets" and ts.soft_targets is not None:
                value = float(ts.soft_targets[pos].float().sum())
            elif self.normalizer_type == "soft_targets":  # a binary assigner: c = 1
                value = float(pos.sum())
            else:
                if inputs is None:
                    raise ValueError(
                        "normalizer_type='retinanet_matched' counts on the step's anchors and "
                        "GTs: pass the assigner inputs (positives_normalizer(..., inputs=...))"
                    )
                value = float(retinanet_matched_count(inputs))
            self._step_normalizers[name] = self.ema_normalizer(value, name)
        return self._step_normalizers[name]

    def classification_loss_fn(self, logits: Tensor, targets: Tensor, labels: Tensor) -> Tensor:
        """Eq. 1 with t -> c (soft targets c on A_pos, 0 on A_neg)."""
        return cleanliness_focal_loss(logits, targets, self.focal_loss_alpha, self.focal_loss_gamma)

    def log_assignment(self, inputs: AssignInputs, result: AssignResult) -> None:
        super().log_assignment(inputs, result)
        pos = result.positive_mask(self.num_classes)
        if not int(pos.sum()) or "cleanliness" not in result.extras:
            return
        try:
            storage = get_event_storage()
        except AssertionError:  # outside a trainer
            return
        for key in ("cleanliness", "loc_a", "cls_c"):
            storage.put_scalar(f"noisy/mean_{key}", float(result.extras[key][pos].mean()))
        if result.weights is not None:
            storage.put_scalar("noisy/max_weight", float(result.weights[pos].max()))
