"""Registered META_ARCHs: one thin file per method on :class:`AssignmentDetector`."""

from .atss import ATSS
from .base import AssignmentDetector
from .dla import DLA
from .noisy_anchor import NoisyAnchorRetinaNet
from .padet import PADet
from .sad import SemiAnchoredDetector

__all__ = [
    "AssignmentDetector",
    "ATSS",
    "DLA",
    "NoisyAnchorRetinaNet",
    "PADet",
    "SemiAnchoredDetector",
]
