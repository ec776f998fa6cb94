"""Label assigners: pure tensor rules behind :class:`LabelAssigner` (their yacs builders are all
in :mod:`.build`)."""

from .atss import ATSSAssigner
from .base import (
    AssignInputs,
    AssignResult,
    LabelAssigner,
    StagedAssigner,
    TargetSet,
    pad_gt_instances,
)
from .cleanliness import CleanlinessAssigner
from .dla import DLAAssigner, dla_metric
from .max_iou import MaxIoUAssigner
from .sad import SADAssigner

__all__ = [
    "ATSSAssigner",
    "AssignInputs",
    "AssignResult",
    "CleanlinessAssigner",
    "DLAAssigner",
    "LabelAssigner",
    "MaxIoUAssigner",
    "SADAssigner",
    "StagedAssigner",
    "TargetSet",
    "dla_metric",
    "pad_gt_instances",
]
