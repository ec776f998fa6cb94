"""ATSS detectors (Zhang et al., CVPR 2020): "RetinaNet #A=1 + improvements" with ATSS assignment.

The anchor-based variant regresses Detectron2 deltas (weights 10, 10, 5, 5) from one square
anchor of size 8 x stride per location; the anchor-free variant regresses ltrb distances in
stride units from the anchor's centre (ReLU'd). Both: GN towers, a per-level learnable scale,
a centerness branch on the regression tower (BCE; multiplied into the score at test time as
sqrt(p_cls * p_ctr)), GIoU loss weighted by the centerness target (ATSS's official code, box
loss weight 2), focal loss, P6/P7 from P5. Which variant is the config's choice of box coder.
"""

from detectron2.modeling import META_ARCH_REGISTRY

from .base import AssignmentDetector

__all__ = ["ATSS"]


@META_ARCH_REGISTRY.register()
class ATSS(AssignmentDetector):
    """``AssignmentDetector`` with an ``ATSSAssigner`` (any assigner works: "RetinaNet + ATSS"
    ablations and the reverse are a config change)."""

    loss_prefix = "atss"
