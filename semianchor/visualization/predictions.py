"""The prediction picture: an image's ground truth beside a model's detections."""

from typing import Sequence

import numpy as np

from .canvas import (
    box_patch,
    class_colors,
    class_name,
    drawn_scale,
    new_figure,
    save_figure,
    show_image,
)

__all__ = ["draw_predictions"]


def _draw_boxes(ax, boxes, classes, colors, class_names, scores=None, linewidth=2.0) -> None:
    for j, (box, k) in enumerate(zip(boxes, classes)):
        x0, y0 = (float(v) for v in box[:2])
        color = colors[int(k)] if 0 <= int(k) < len(colors) else (1.0, 1.0, 1.0)
        ax.add_patch(box_patch(box, edgecolor=color, linewidth=linewidth))
        label = class_name(class_names, int(k))
        if scores is not None:
            label += f" {float(scores[j]):.2f}"
        ax.text(
            x0 + 1,
            y0 + 1,
            label,
            fontsize=7,
            color="black",
            va="top",
            bbox=dict(facecolor=color, alpha=0.75, pad=1, edgecolor="none"),
        )


def draw_predictions(
    image_rgb: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    pred_boxes: np.ndarray,
    pred_classes: np.ndarray,
    pred_scores: np.ndarray,
    class_names: Sequence[str],
    out_path: str,
    metadata=None,
    score_thresh: float = 0.5,
    title: str = "",
) -> str:
    """Ground truth (left) beside the predictions with score >= ``score_thresh`` (right)."""
    h, w = image_rgb.shape[:2]
    scale = drawn_scale(h, w)
    colors = class_colors(metadata, len(class_names))
    keep = np.asarray(pred_scores) >= score_thresh
    # lowest score first, so that the most confident boxes and labels are drawn on top
    keep = np.nonzero(keep)[0][np.argsort(np.asarray(pred_scores)[keep], kind="stable")]
    pred_boxes, pred_classes = np.asarray(pred_boxes)[keep], np.asarray(pred_classes)[keep]
    pred_scores = np.asarray(pred_scores)[keep]

    fig = new_figure(2 * w * scale + 40, h * scale + 110)
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(
        left=0.01, right=0.99, top=1 - 60 / (h * scale + 110), bottom=0.06, wspace=0.02
    )

    def counts(classes):
        return ", ".join(
            f"{class_name(class_names, k)} {int((np.asarray(classes) == k).sum())}"
            for k in range(len(class_names))
        )

    show_image(axes[0], image_rgb, f"ground truth: {len(gt_boxes)} boxes\n({counts(gt_classes)})")
    _draw_boxes(axes[0], gt_boxes, gt_classes, colors, class_names)
    show_image(
        axes[1],
        image_rgb,
        f"predictions, score >= {score_thresh:g}: {len(pred_boxes)} boxes\n"
        f"({counts(pred_classes)})",
    )
    _draw_boxes(axes[1], pred_boxes, pred_classes, colors, class_names, scores=pred_scores)
    if title:
        fig.suptitle(title, fontsize=12, y=0.995, va="top")
    from matplotlib.patches import Patch

    fig.legend(
        handles=[
            Patch(color=colors[k], label=class_name(class_names, k))
            for k in range(len(class_names))
        ],
        loc="lower center",
        ncol=len(class_names),
        fontsize=9,
        frameon=False,
    )
    return save_figure(fig, out_path)
