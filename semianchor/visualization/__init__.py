"""Pictures: the assignment picture (:func:`draw_assignment`, the one the report, the
visualization tool and the analysis tool's examples draw), ground truth beside predictions
(:func:`draw_predictions`) and the training losses (:func:`plot_loss_curve`); the shared figure
helpers are in :mod:`.canvas`."""

from .assignment import draw_assignment
from .canvas import input_image_rgb
from .loss_curve import plot_loss_curve
from .predictions import draw_predictions

__all__ = ["draw_assignment", "draw_predictions", "input_image_rgb", "plot_loss_curve"]
