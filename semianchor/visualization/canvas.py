"""What every picture of the library shares: an Agg figure sized in pixels, saving, the display
scale of small images, class colours and names, image panels and box outlines.

Figures are drawn with matplotlib's Agg canvas (no display, no pyplot global state); matplotlib is
imported when a picture is drawn, not with the package.
"""

import os
from typing import Dict, List, Sequence

import numpy as np

__all__ = [
    "DPI",
    "MIN_DRAWN_SIDE",
    "box_patch",
    "class_colors",
    "class_name",
    "drawn_scale",
    "input_image_rgb",
    "new_figure",
    "save_figure",
    "show_image",
]

DPI = 100
# Upscale small images (BCCD is resized to 341x256, shapes are 128-256 px) so that boxes, dots
# and text stay readable: the shorter image side is drawn at least this many pixels.
MIN_DRAWN_SIDE = 640


def new_figure(width_px: float, height_px: float):
    """A matplotlib figure of ``width_px`` x ``height_px`` pixels on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str) -> str:
    """Write ``fig`` to ``path`` (the format from its extension: .png, .jpg), creating its
    folder; returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def drawn_scale(height: int, width: int) -> float:
    """Display scale: small images are upscaled so that the shorter side is MIN_DRAWN_SIDE."""
    return max(1.0, MIN_DRAWN_SIDE / max(min(height, width), 1))


def class_colors(metadata, num_classes: int) -> List[tuple]:
    """Colours (RGB in [0, 1]) per class: the metadata's ``thing_colors`` when given."""
    from matplotlib import colormaps

    colors = list(getattr(metadata, "thing_colors", None) or []) if metadata is not None else []
    if len(colors) >= num_classes:
        return [tuple(c / 255.0 for c in colors[k]) for k in range(num_classes)]
    cmap = colormaps["tab10"]
    return [cmap(k % 10)[:3] for k in range(num_classes)]


def class_name(class_names: Sequence[str], k: int) -> str:
    return class_names[k] if 0 <= k < len(class_names) else f"class {k}"


def show_image(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(image, interpolation="bilinear")
    ax.set_title(title, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def box_patch(box, **style):
    """A matplotlib rectangle (no fill) for an XYXY box."""
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = (float(v) for v in box)
    return Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, **style)


def input_image_rgb(mapped: Dict, image_format: str) -> np.ndarray:
    """The image a model sees (a mapper's ``image``: C x H x W, after the resize) as a contiguous
    H x W x 3 uint8 RGB array, in the coordinates of its anchors and GT boxes."""
    image = mapped["image"].permute(1, 2, 0).numpy().astype(np.uint8)
    if image_format == "BGR":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)
