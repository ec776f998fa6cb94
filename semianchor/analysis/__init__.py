"""Label-assignment analysis: what each assigner makes of a dataset, before any training.

``tools/analyze_assignment.py`` is the command line; :func:`analyze` streams the images through
the detectors' public assignment step, :class:`AssignmentStats` accumulates the statistics and
:func:`write_analysis` writes the tables, CSVs and plots, :func:`write_examples` the example
images of GTs without a positive.
"""

from .assignment import AssignmentStats
from .report import summary_lines, write_analysis, write_examples
from .run import ASSIGNER_PRESETS, analyze, assigner_preset, build_models, training_scale_mapper

__all__ = [
    "ASSIGNER_PRESETS",
    "AssignmentStats",
    "analyze",
    "assigner_preset",
    "build_models",
    "summary_lines",
    "training_scale_mapper",
    "write_analysis",
    "write_examples",
]
