"""End-of-training report: pictures a person can read, and where to go next.

:func:`write_report` (called by ``tools/lazyconfig_train_net.py`` after training, main process
only, ``--no-report`` to skip) writes under ``<output_dir>/report/``:

- ``predictions_<image>.png``: a few validation images, ground truth (left) beside the trained
  model's detections (right), boxes coloured by class, class names from the dataset metadata;
- ``assignment_<image>.png``: which anchors the model's label assigner makes positive for which
  GT, drawn as in the papers' figures (GT boxes, positive anchor centres as dots in their GT's
  colour, a legend with the counts; anchor boxes only on request). A staged assigner (PADet)
  gets one panel per stage (initial vs promoted anchors); SAD gets a second panel with its
  positive locations and the anchor-classification targets (mu_hat) of their anchors;
- ``loss.png``: the training losses (and learning rate) from ``metrics.json``;
- ``summary.txt``: AP/AP50, where the checkpoint, pictures and TensorBoard logs are, and the
  commands to serve the model and to train on one's own COCO json (also printed).

Everything is drawn with matplotlib's Agg canvas (no display, no pyplot global state).

The assignment comes from the detectors' public assignment step
(:func:`semianchor.engine.assignment.run_assignment`).
"""

import json
import logging
import os
import shlex
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .assignment import run_assignment

logger = logging.getLogger(__name__)

__all__ = [
    "ImageAssignment",
    "LocationTargets",
    "compute_assignment",
    "draw_assignment",
    "draw_predictions",
    "plot_loss_curve",
    "write_report",
]

# Upscale small images (BCCD is resized to 341x256, shapes are 128-256 px) so that boxes, dots
# and text stay readable: the shorter image side is drawn at least this many pixels.
MIN_DRAWN_SIDE = 640
# SAD's picture draws the A anchors of one positive location for at most this many GTs
MAX_AC_LOCATIONS = 3
_DPI = 100
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ----------------------------------------------------------------------------- model internals
@dataclass
class LocationTargets:
    """SAD's location targets of one image: its positive locations and, for each, the
    anchor-classification (AC) targets of the location's A anchors.

    Attributes:
        centres: (Q, 2) float centres of the positive locations.
        matched_gt: (Q,) int GT of each positive location (index into the image's GTs).
        anchor_boxes: (Q, A, 4) float XYXY boxes of each positive location's anchors.
        soft_targets: (Q, A) float AC soft target mu_hat of each anchor (0 where y_hat = 0).
        ac_positive: (Q, A) bool y_hat: the anchor's class after regression is the location's.
        stats: counts for the legend ("positive anchors", "negative anchors", "positive
            locations", "negative locations", "mean mu_hat").
    """

    centres: np.ndarray
    matched_gt: np.ndarray
    anchor_boxes: np.ndarray
    soft_targets: np.ndarray
    ac_positive: np.ndarray
    stats: Dict[str, float] = field(default_factory=dict)


@dataclass
class ImageAssignment:
    """The assignment of one image, in the coordinates of the (resized) input image.

    Attributes:
        gt_boxes: (M, 4) float XYXY GT boxes.
        gt_classes: (M,) int GT classes.
        anchor_boxes: (P, 4) float XYXY boxes of the positive anchors.
        matched_gt: (P,) int index into ``gt_boxes`` of each positive anchor's GT.
        anchor_levels: (P,) int pyramid level index of each positive anchor.
        level_names: names of the levels (e.g. ["p3", ..., "p7"]).
        method: a short description of the detector and its assigner (for titles).
        stage: the name of the assignment stage drawn ("" for a single-stage assigner).
        earlier_stages: a staged assigner's earlier stages, in order (PADet: "initial", the
            APM's matching on the initial anchors, before the final "promoted" one).
        locations: SAD's positive locations and AC targets (None for other methods).
    """

    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    anchor_boxes: np.ndarray
    matched_gt: np.ndarray
    anchor_levels: np.ndarray
    level_names: List[str]
    method: str
    stage: str = ""
    earlier_stages: List["ImageAssignment"] = field(default_factory=list)
    locations: Optional[LocationTargets] = None


def compute_assignment(model, batched_inputs: List[Dict]) -> List[ImageAssignment]:
    """Run ``model``'s label assignment on mapped inputs (with ``instances``) and return, per
    image, the GT boxes, the positive anchors' boxes and the GT each one is matched to.

    The assignment comes from the model's public assignment step
    (:func:`semianchor.engine.assignment.run_assignment`: ``model.assign``, the step
    ``forward_training`` takes before its losses; Detectron2's ``label_anchors`` for the RetinaNet
    and FCOS baselines; the proposal generator's ``assign`` for the Noisy-Anchor RPN), so every
    method's own anchors and assigner inputs are drawn (prediction-aware rules such as DLA or
    cleanliness see the model's real predictions). The model runs in eval mode (BatchNorm
    statistics untouched) and is restored.

    Raises:
        TypeError: the model has no assignment step.
        ValueError: an input has no ``instances`` (map it with ``is_train=True``).
    """
    assignment = run_assignment(model, batched_inputs)
    stages = assignment.stages()
    views = [
        _image_assignments(inputs, result, assignment.level_names, assignment.method)
        for _, inputs, result in stages
    ]
    out = views[-1]
    for (name, _, _), earlier in zip(stages[:-1], views[:-1]):
        for a, v in zip(out, earlier):
            v.stage = name
            a.earlier_stages.append(v)
    if len(stages) > 1:
        for a in out:
            a.stage = assignment.final_stage
    result, final_inputs = assignment.result, stages[-1][1]
    if "locations" in result.target_sets and "anchor_cls" in result.target_sets:
        for i, loc in enumerate(_location_targets(final_inputs, result)):
            out[i].locations = loc
    return out


def _image_assignments(inputs, result, level_names, method) -> List[ImageAssignment]:
    """One :class:`ImageAssignment` per image from an assigner's inputs and result."""
    levels = torch.repeat_interleave(
        torch.arange(len(inputs.num_anchors_per_level)),
        torch.as_tensor(inputs.num_anchors_per_level),
    )
    positive = (result.positive_mask(inputs.num_classes) & (result.matched_gt >= 0)).cpu()
    anchors = inputs.anchors.cpu()
    names = level_names or [f"level {k}" for k in range(len(inputs.num_anchors_per_level))]
    out = []
    for i in range(inputs.num_images):
        m, pos = int(inputs.gt_counts[i]), positive[i]
        image_anchors = anchors[i] if anchors.dim() == 3 else anchors  # per-image or shared
        out.append(
            ImageAssignment(
                gt_boxes=inputs.gt_boxes[i, :m].cpu().numpy(),
                gt_classes=inputs.gt_classes[i, :m].cpu().numpy(),
                anchor_boxes=image_anchors[pos].numpy(),
                matched_gt=result.matched_gt[i].cpu()[pos].numpy(),
                anchor_levels=levels[pos].numpy(),
                level_names=names,
                method=method,
            )
        )
    return out


def _location_targets(inputs, result) -> List[LocationTargets]:
    """SAD: per image, the positive locations (target set "locations") and the AC targets of
    their anchors (target set "anchor_cls": label 0 = y_hat, soft targets = mu_hat)."""
    K = inputs.num_classes
    A = inputs.uniform_anchors_per_location("SAD's location picture")
    locations, ac = result.target_sets["locations"], result.target_sets["anchor_cls"]
    loc_pos = (locations.positive_mask(K) & (locations.matched_gt >= 0)).cpu()
    anchor_labels = result.extras.get("anchor_labels", result.labels).cpu()
    mu_hat = ac.soft_targets.float().cpu() if ac.soft_targets is not None else None
    y_hat = (ac.labels == 0).cpu()
    anchors = inputs.batch_anchors().cpu()
    out = []
    for i in range(inputs.num_images):
        q = torch.nonzero(loc_pos[i]).flatten()
        idx = q[:, None] * A + torch.arange(A)[None, :]  # (Q, A): a location's anchors
        boxes = anchors[i][idx]
        mu = mu_hat[i][idx] if mu_hat is not None else y_hat[i][idx].float()
        yh = y_hat[i][idx]
        mu = torch.where(yh, mu, torch.zeros_like(mu))
        lab, loc_lab = anchor_labels[i], locations.labels[i].cpu()
        stats = {
            "positive anchors": int(((lab >= 0) & (lab < K)).sum()),
            "negative anchors": int((lab == K).sum()),
            "positive locations": int(len(q)),
            "negative locations": int((loc_lab == K).sum()),
            "mean mu_hat": float(mu[yh].mean()) if yh.any() else float("nan"),
        }
        out.append(
            LocationTargets(
                centres=((boxes[:, 0, :2] + boxes[:, 0, 2:]) / 2).numpy().reshape(-1, 2),
                matched_gt=locations.matched_gt[i].cpu()[q].numpy(),
                anchor_boxes=boxes.numpy().reshape(-1, A, 4),
                soft_targets=mu.numpy().reshape(-1, A),
                ac_positive=yh.numpy().reshape(-1, A),
                stats=stats,
            )
        )
    return out


# ----------------------------------------------------------------------------- drawing helpers
def _figure(width_px: float, height_px: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    return path


def _drawn_scale(height: int, width: int) -> float:
    """Display scale: small images are upscaled so that the shorter side is MIN_DRAWN_SIDE."""
    return max(1.0, MIN_DRAWN_SIDE / max(min(height, width), 1))


def _class_colors(metadata, num_classes: int) -> List[tuple]:
    """Colours (RGB in [0, 1]) per class: the metadata's ``thing_colors`` when given."""
    from matplotlib import colormaps

    colors = list(getattr(metadata, "thing_colors", None) or []) if metadata is not None else []
    if len(colors) >= num_classes:
        return [tuple(c / 255.0 for c in colors[k]) for k in range(num_classes)]
    cmap = colormaps["tab10"]
    return [cmap(k % 10)[:3] for k in range(num_classes)]


def _class_name(class_names: Sequence[str], k: int) -> str:
    return class_names[k] if 0 <= k < len(class_names) else f"class {k}"


def _show_image(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(image, interpolation="bilinear")
    ax.set_title(title, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_boxes(ax, boxes, classes, colors, class_names, scores=None, linewidth=2.0) -> None:
    for j, (box, k) in enumerate(zip(boxes, classes)):
        x0, y0 = (float(v) for v in box[:2])
        color = colors[int(k)] if 0 <= int(k) < len(colors) else (1.0, 1.0, 1.0)
        ax.add_patch(_box_patch(box, edgecolor=color, linewidth=linewidth))
        label = _class_name(class_names, int(k))
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


# ----------------------------------------------------------------------------- pictures
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
    scale = _drawn_scale(h, w)
    colors = _class_colors(metadata, len(class_names))
    keep = np.asarray(pred_scores) >= score_thresh
    # lowest score first, so that the most confident boxes and labels are drawn on top
    keep = np.nonzero(keep)[0][np.argsort(np.asarray(pred_scores)[keep], kind="stable")]
    pred_boxes, pred_classes = np.asarray(pred_boxes)[keep], np.asarray(pred_classes)[keep]
    pred_scores = np.asarray(pred_scores)[keep]

    fig = _figure(2 * w * scale + 40, h * scale + 110)
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(
        left=0.01, right=0.99, top=1 - 60 / (h * scale + 110), bottom=0.06, wspace=0.02
    )

    def counts(classes):
        return ", ".join(
            f"{_class_name(class_names, k)} {int((np.asarray(classes) == k).sum())}"
            for k in range(len(class_names))
        )

    _show_image(axes[0], image_rgb, f"ground truth: {len(gt_boxes)} boxes\n({counts(gt_classes)})")
    _draw_boxes(axes[0], gt_boxes, gt_classes, colors, class_names)
    _show_image(
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
            Patch(color=colors[k], label=_class_name(class_names, k))
            for k in range(len(class_names))
        ],
        loc="lower center",
        ncol=len(class_names),
        fontsize=9,
        frameon=False,
    )
    return _save(fig, out_path)


def draw_assignment(
    image_rgb: np.ndarray,
    assignment: ImageAssignment,
    class_names: Sequence[str],
    out_path: str,
    title: str = "",
    show_anchor_boxes: bool = False,
) -> str:
    """GT boxes and the centres of their positive anchors, one colour per GT.

    Each GT box is labelled with its class and its number of positive anchors; a GT that got no
    positive anchor is drawn dashed. The legend gives the totals and the positives per pyramid
    level. ``show_anchor_boxes`` also draws each positive anchor's box (thin, in its GT's colour).

    A staged assignment (PADet) is drawn as one panel per stage, left to right (the initial
    anchors' positives, then the promoted anchors'); a SAD assignment gets a last panel with the
    positive locations and, for one location per GT, its anchors coloured by their AC target.
    """
    a = assignment
    for view in [a] + list(a.earlier_stages):
        m, p = len(view.gt_boxes), len(view.anchor_boxes)
        if p and (view.matched_gt.min() < 0 or view.matched_gt.max() >= m):
            raise ValueError(
                f"matched_gt indices must be in [0, {m}), got "
                f"{view.matched_gt.min()}..{view.matched_gt.max()}"
            )
    h, w = image_rgb.shape[:2]
    scale = _drawn_scale(h, w)
    panels = [("anchors", v) for v in a.earlier_stages] + [("anchors", a)]
    if a.locations is not None:
        panels.append(("locations", a))
    # the SAD panel keeps room on its right for the mu_hat colour bar
    widths = [w * scale + (110 if kind == "locations" else 20) for kind, _ in panels]
    fig_w = sum(widths)
    # long titles (an assigner's repr) are wrapped to the figure's width
    title_lines = [
        part
        for line in title.splitlines()
        for part in (textwrap.wrap(line, max(40, int(fig_w / 8.6))) or [""])
    ]
    # one legend row per entry (long entries, e.g. the per-level counts, must not be cut off)
    legend_h = 22 * (7 if show_anchor_boxes else 6) + 16
    title_h = 40 + 18 * len(title_lines)
    fig_h = h * scale + title_h + legend_h
    fig = _figure(fig_w, fig_h)
    if title_lines:
        fig.text(0.5, 1 - 6 / fig_h, "\n".join(title_lines), fontsize=11, ha="center", va="top")
    # a lighter image so that the coloured dots and boxes stand out
    light = (0.55 * image_rgb.astype(np.float32) + 0.45 * 255).astype(np.uint8)
    gt_colors = _gt_colors(len(a.gt_boxes))
    left = 0.0
    for (kind, view), width in zip(panels, widths):
        rect = [(left + 10) / fig_w, legend_h / fig_h, w * scale / fig_w, h * scale / fig_h]
        ax = fig.add_axes(rect)
        if kind == "anchors":
            what = f"{view.stage} anchors: positives per GT" if view.stage else ""
            _show_image(
                ax, light, what or ("" if title else f"{a.method}: positive anchors per GT")
            )
            handles = _draw_positive_anchors(ax, view, class_names, gt_colors, show_anchor_boxes)
        else:
            _show_image(ax, light, "positive locations and the AC targets of their anchors")
            bar_ax = fig.add_axes(
                [
                    (left + 20 + w * scale) / fig_w,
                    rect[1] + rect[3] * 0.1,
                    14 / fig_w,
                    rect[3] * 0.8,
                ]
            )
            handles = _draw_locations(fig, ax, bar_ax, a, class_names, gt_colors)
        left += width
        # anchor boxes may extend past the image: keep the view on the image
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(0.0, -0.01),
            ncol=1,
            fontsize=9,
            frameon=False,
            borderaxespad=0.0,
        )
    return _save(fig, out_path)


def _gt_colors(m: int) -> List[tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    # alternate the two halves of tab20 so that neighbouring GT indices get distinct hues
    return [cmap((2 * g) % 20 + ((2 * g) // 20) % 2)[:3] for g in range(m)]


def _box_patch(box, **style):
    """A matplotlib rectangle (no fill) for an XYXY box."""
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = (float(v) for v in box)
    return Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, **style)


def _per_gt(matched_gt: np.ndarray, m: int) -> np.ndarray:
    """(m,) how many entries are matched to each GT."""
    return np.bincount(matched_gt.astype(np.int64), minlength=m)[:m] if m else np.zeros(0, int)


def _draw_gt_boxes(ax, a: ImageAssignment, class_names, gt_colors, per_gt) -> None:
    for g in range(len(a.gt_boxes)):
        x0, y0 = (float(v) for v in a.gt_boxes[g, :2])
        ax.add_patch(
            _box_patch(
                a.gt_boxes[g],
                edgecolor=gt_colors[g],
                linewidth=2.0,
                linestyle="-" if per_gt[g] else "--",
            )
        )
        ax.text(
            x0 + 1,
            y0 + 1,
            f"{_class_name(class_names, int(a.gt_classes[g]))}: {per_gt[g]}",
            fontsize=7,
            va="top",
            color="black",
            bbox=dict(facecolor=gt_colors[g], alpha=0.8, pad=1, edgecolor="none"),
        )


def _draw_positive_anchors(ax, a: ImageAssignment, class_names, gt_colors, show_anchor_boxes):
    """One panel: GT boxes and positive anchor centres; returns the legend handles."""
    from matplotlib.lines import Line2D

    m, p = len(a.gt_boxes), len(a.anchor_boxes)
    per_gt = _per_gt(a.matched_gt, m)
    per_level = np.bincount(a.anchor_levels.astype(np.int64), minlength=len(a.level_names))
    _draw_gt_boxes(ax, a, class_names, gt_colors, per_gt)
    if p:
        centres = (a.anchor_boxes[:, :2] + a.anchor_boxes[:, 2:]) / 2
        dot_colors = [gt_colors[int(g)] for g in a.matched_gt]
        if show_anchor_boxes:
            for box, color in zip(a.anchor_boxes, dot_colors):
                ax.add_patch(_box_patch(box, edgecolor=color, linewidth=0.6, alpha=0.7))
        ax.scatter(
            centres[:, 0],
            centres[:, 1],
            s=28,
            c=dot_colors,
            edgecolors="black",
            linewidths=0.6,
            zorder=3,
        )
    levels = " · ".join(f"{name} {int(n)}" for name, n in zip(a.level_names, per_level))
    handles = [
        Line2D(
            [], [], color="gray", linewidth=2, label=f"GT box ({m}), labelled with class: positives"
        ),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="gray",
            markeredgecolor="black",
            label=f"positive anchor centre, coloured by its GT ({p}; {p / max(m, 1):.1f} per GT)",
        ),
        Line2D([], [], color="none", label=f"positives per level: {levels}"),
        Line2D(
            [],
            [],
            color="gray",
            linewidth=2,
            linestyle="--",
            label=f"GT without a positive anchor ({int((per_gt == 0).sum())})",
        ),
    ]
    if show_anchor_boxes:
        handles.append(Line2D([], [], color="gray", linewidth=0.6, label="positive anchor box"))
    return handles


def _draw_locations(fig, ax, bar_ax, a: ImageAssignment, class_names, gt_colors):
    """SAD's panel: positive locations as rings in their GT's colour; for the largest GTs
    (``MAX_AC_LOCATIONS``), the location nearest the GT's centre with its A anchors coloured by
    the AC target mu_hat (grey dotted: y_hat = 0); the best anchor (mu_hat = 1) thick. Returns
    the legend handles."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    loc, m = a.locations, len(a.gt_boxes)
    q = len(loc.centres)
    per_gt = (
        np.bincount(loc.matched_gt.astype(np.int64), minlength=m)[:m] if m else np.zeros(0, int)
    )
    _draw_gt_boxes(ax, a, class_names, gt_colors, per_gt)
    cmap, norm = colormaps["viridis"], Normalize(0.0, 1.0)
    # the anchors of one location for the largest GTs only: 25 boxes per GT quickly hide the image
    areas = (a.gt_boxes[:, 2] - a.gt_boxes[:, 0]) * (a.gt_boxes[:, 3] - a.gt_boxes[:, 1])
    shown = [g for g in np.argsort(-areas, kind="stable") if (loc.matched_gt == g).any()]
    shown = shown[:MAX_AC_LOCATIONS]
    for g in shown:
        mine = np.nonzero(loc.matched_gt == g)[0]
        gt_centre = (a.gt_boxes[g, :2] + a.gt_boxes[g, 2:]) / 2
        j = mine[np.argmin(((loc.centres[mine] - gt_centre) ** 2).sum(1))]
        order = np.argsort(loc.soft_targets[j])  # the best anchors drawn last, on top
        for k in order:
            mu, positive = float(loc.soft_targets[j, k]), bool(loc.ac_positive[j, k])
            ax.add_patch(
                _box_patch(
                    loc.anchor_boxes[j, k],
                    edgecolor=cmap(norm(mu)) if positive else (0.6, 0.6, 0.6),
                    linewidth=2.4 if positive and mu >= 1.0 - 1e-6 else (1.2 if positive else 0.6),
                    linestyle="-" if positive else ":",
                    alpha=1.0 if positive else 0.4,
                    zorder=2,
                )
            )
    if q:
        ax.scatter(
            loc.centres[:, 0],
            loc.centres[:, 1],
            s=34,
            facecolors="none",
            edgecolors=[gt_colors[int(g)] for g in loc.matched_gt],
            linewidths=1.6,
            zorder=3,
        )
    from matplotlib.cm import ScalarMappable

    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=bar_ax)
    bar.set_label("AC target mu_hat", fontsize=8)
    st = loc.stats
    ratio = lambda pos, neg: f"1:{neg / pos:.0f}" if pos else "no positives"  # noqa: E731
    handles = [
        Line2D(
            [],
            [],
            color="gray",
            linewidth=2,
            label=f"GT box ({m}), labelled with class: positive locations",
        ),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="none",
            markeredgecolor="gray",
            label=f"positive location, ring in its GT's colour ({q}; {q / max(m, 1):.1f} per GT)",
        ),
        Line2D(
            [],
            [],
            color=cmap(0.8),
            linewidth=1.2,
            label=f"anchors of one location of the {len(shown)} largest GT(s), coloured by mu_hat"
            " (thick: mu_hat = 1)",
        ),
        Line2D([], [], color="gray", linewidth=0.6, linestyle=":", label="anchor with y_hat = 0"),
        Line2D(
            [],
            [],
            color="none",
            label="pos:neg anchors "
            f"{ratio(st.get('positive anchors', 0), st.get('negative anchors', 0))}"
            " vs locations "
            f"{ratio(st.get('positive locations', 0), st.get('negative locations', 0))}",
        ),
        Line2D(
            [],
            [],
            color="none",
            label=f"mean mu_hat of y_hat = 1 anchors: {st.get('mean mu_hat', float('nan')):.2f}",
        ),
    ]
    return handles


def _read_metrics(metrics_json: str) -> List[Dict]:
    if not os.path.isfile(metrics_json):
        raise FileNotFoundError(f"metrics file not found: {metrics_json} (written during training)")
    rows = []
    with open(metrics_json) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{metrics_json}, line {n}: not json ({e})") from e
    return rows


def plot_loss_curve(metrics_json: str, out_path: str, title: str = "") -> str:
    """Training losses (total and each term) and the learning rate against the iteration.

    Detectron2 logs the median of the last ``log_period`` iterations, so each point is smoothed.

    Raises:
        FileNotFoundError: no metrics file.
        ValueError: a line is not json, or no row has ``total_loss``.
    """
    rows = [r for r in _read_metrics(metrics_json) if "total_loss" in r and "iteration" in r]
    if not rows:
        raise ValueError(f"{metrics_json} has no training rows (no 'total_loss'): nothing to plot")
    rows.sort(key=lambda r: r["iteration"])
    # --resume appends: keep the last row of each iteration
    rows = list({r["iteration"]: r for r in rows}.values())
    iters = [r["iteration"] + 1 for r in rows]
    terms = sorted({k for r in rows for k in r if k.startswith("loss_")})

    fig = _figure(820, 480)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(
        iters,
        [r["total_loss"] for r in rows],
        color="black",
        linewidth=2.2,
        marker="o",
        markersize=3,
        label="total_loss",
    )
    for t in terms:
        ax.plot(iters, [r.get(t, np.nan) for r in rows], linewidth=1.4, label=t)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (median over the logging period)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if any("lr" in r for r in rows):
        ax2 = ax.twinx()
        ax2.plot(
            iters,
            [r.get("lr", np.nan) for r in rows],
            color="gray",
            linestyle=":",
            linewidth=1.4,
            label="lr",
        )
        ax2.set_ylabel("learning rate", color="gray")
        ax2.tick_params(axis="y", colors="gray")
        ax2.set_ylim(bottom=0)
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper right")
    else:
        ax.legend(fontsize=8, loc="upper right")
    ax.set_title(
        title or f"training loss ({len(rows)} logged points, last iteration {iters[-1]})",
        fontsize=11,
    )
    fig.tight_layout()
    return _save(fig, out_path)


# ----------------------------------------------------------------------------- the report
def _display_path(path: str) -> str:
    """``path`` relative to the working directory when it is below it (commands to copy-paste)."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def _python() -> str:
    exe = _display_path(sys.executable)
    return exe if not os.path.isabs(exe) else "python"


def _dataset_names(dataset_cfg) -> List[str]:
    names = dataset_cfg.get("names", None) or dataset_cfg.get("name", None) or []
    return [names] if isinstance(names, str) else list(names)


def _own_data_config(config_file: str) -> str:
    """The COCO-json twin of a quickstart config (``x_bccd.py`` / ``x_shapes.py`` ->
    ``x_coco_json.py``) when it exists, else the quickstart ATSS one."""
    if config_file:
        for suffix in ("_bccd.py", "_shapes.py"):
            if config_file.endswith(suffix):
                twin = config_file[: -len(suffix)] + "_coco_json.py"
                if os.path.isfile(twin):
                    return _display_path(twin)
    return _display_path(os.path.join(_REPO_ROOT, "configs", "quickstart", "atss_R18_coco_json.py"))


def _pick(records: List[Dict], n: int) -> List[Dict]:
    """``n`` records spread over the dataset (deterministic), preferring images with objects."""
    with_objects = [r for r in records if r.get("annotations")] or records
    if n >= len(with_objects):
        return with_objects
    return [with_objects[int(i)] for i in np.linspace(0, len(with_objects) - 1, n).round()]


def _gt_of(record: Dict):
    from detectron2.structures import BoxMode

    boxes = [
        BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
        for a in record.get("annotations", [])
    ]
    classes = [a["category_id"] for a in record.get("annotations", [])]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(classes, dtype=np.int64)


def _stem(record: Dict) -> str:
    return os.path.splitext(os.path.basename(record["file_name"]))[0]


def write_report(
    cfg,
    model,
    results: Optional[Dict] = None,
    config_file: str = "",
    overrides: Sequence[str] = (),
    num_images: int = 4,
    score_thresh: float = 0.5,
    print_summary: bool = True,
) -> Dict:
    """Write the pictures and the summary of a finished training run (see the module docstring).

    Args:
        cfg: the LazyConfig the run was trained with (``train.output_dir``, ``dataloader``).
        model: the trained model (DDP-wrapped or not); it is run in eval mode and restored.
        results: the evaluation results (``{"bbox": {"AP": ..., "AP50": ...}}``), if any.
        config_file, overrides: the training command's config and ``key=value`` overrides, to
            write the follow-up commands (model overrides are repeated in the demo command).
        num_images: validation images drawn with their predictions.
        score_thresh: predictions drawn from this score on (0.5: after the quickstart's short
            schedule many duplicates score 0.3-0.5, and a cleaner picture reads better).

    Returns:
        dict with the paths written (``predictions``: list, ``assignment``: path or None,
        ``loss``, ``summary``) and the summary text (``text``).
    """
    from detectron2.config import instantiate
    from detectron2.data import DatasetMapper, MetadataCatalog
    from detectron2.data import detection_utils as utils

    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    output_dir = cfg.train.output_dir
    report_dir = os.path.join(output_dir, "report")
    os.makedirs(report_dir, exist_ok=True)
    net = getattr(model, "module", model)
    was_training = net.training
    written: Dict = {"predictions": [], "assignment": None}

    test_name = _dataset_names(cfg.dataloader.test.dataset)[0]
    metadata = MetadataCatalog.get(test_name)
    class_names = list(metadata.get("thing_classes", None) or [])
    test_mapper_cfg = cfg.dataloader.test.mapper
    image_format = test_mapper_cfg.get("image_format", "BGR")
    test_augs = [instantiate(a) for a in test_mapper_cfg.get("augmentations", [])]
    method = type(net).__name__

    # 1. validation images: ground truth beside the predictions
    records = _pick(instantiate(cfg.dataloader.test.dataset), num_images)
    test_mapper = DatasetMapper(is_train=False, augmentations=test_augs, image_format=image_format)
    net.eval()
    try:
        with torch.no_grad():
            for record in records:
                outputs = net([test_mapper(dict(record))])[0]["instances"].to("cpu")
                image = utils.read_image(record["file_name"], format="RGB")
                gt_boxes, gt_classes = _gt_of(record)
                written["predictions"].append(
                    draw_predictions(
                        image,
                        gt_boxes,
                        gt_classes,
                        outputs.pred_boxes.tensor.numpy(),
                        outputs.pred_classes.numpy(),
                        outputs.scores.numpy(),
                        class_names,
                        os.path.join(report_dir, f"predictions_{_stem(record)}.png"),
                        metadata=metadata,
                        score_thresh=score_thresh,
                        title=f"{method} on {test_name}: {os.path.basename(record['file_name'])}",
                    )
                )
    finally:
        net.train(was_training)

    # 2. the assignment of one training image, in the input resolution the anchors live in
    train_records = _pick(instantiate(cfg.dataloader.train.dataset), 1)
    train_name = _dataset_names(cfg.dataloader.train.dataset)[0]
    # is_train=True keeps the instances; the test-time resize and no flip: a reproducible picture
    assign_mapper = DatasetMapper(is_train=True, augmentations=test_augs, image_format=image_format)
    mapped = assign_mapper(dict(train_records[0]))
    try:
        (assignment,) = compute_assignment(model, [mapped])
    except TypeError as e:  # a model without a semianchor assigner: no picture, say why
        logger.warning(f"No assignment picture: {e}")
    else:
        image = mapped["image"].permute(1, 2, 0).numpy().astype(np.uint8)
        if image_format == "BGR":
            image = image[:, :, ::-1]
        train_classes = list(
            MetadataCatalog.get(train_name).get("thing_classes", None) or class_names
        )
        written["assignment"] = draw_assignment(
            np.ascontiguousarray(image),
            assignment,
            train_classes,
            os.path.join(report_dir, f"assignment_{_stem(train_records[0])}.png"),
            title=f"{assignment.method}\npositive anchors of {train_name}: "
            f"{os.path.basename(train_records[0]['file_name'])} "
            f"({image.shape[1]}x{image.shape[0]} input)",
        )

    # 3. the loss curve
    written["loss"] = plot_loss_curve(
        os.path.join(output_dir, "metrics.json"),
        os.path.join(report_dir, "loss.png"),
        title=f"{method} on {train_name}: training loss",
    )

    # 4. the summary
    written["text"] = _summary(
        cfg, results, config_file, overrides, test_name, records, report_dir, written, score_thresh
    )
    written["summary"] = os.path.join(report_dir, "summary.txt")
    with open(written["summary"], "w") as f:
        f.write(written["text"] + "\n")
    if print_summary:
        print(written["text"], flush=True)
    return written


def _summary(
    cfg, results, config_file, overrides, test_name, records, report_dir, written, score_thresh
) -> str:
    output_dir = _display_path(cfg.train.output_dir)
    checkpoint = os.path.join(output_dir, "model_final.pth")
    bbox = (results or {}).get("bbox", {})
    lines = ["", "=" * 100, f"Done: {output_dir}"]
    if "AP" in bbox:
        lines.append(
            f"  COCO box AP {bbox['AP']:.1f}, AP50 {bbox.get('AP50', float('nan')):.1f} "
            f"on {test_name} (the table above has the rest)"
        )
    else:
        lines.append("  COCO box AP: not evaluated (no evaluator or no evaluation results)")
    lines += [
        f"  checkpoint   {checkpoint}",
        f"  pictures     {_display_path(report_dir)}/  "
        "(predictions_*.png: ground truth | predictions,"
        " assignment_*.png: positive anchors per GT, loss.png)",
        f"  TensorBoard  tensorboard --logdir {output_dir}",
        "",
        "  Serve it on an image or a folder (writes PNGs with the detections):",
    ]
    model_opts = [o for o in overrides if o.startswith("model.")]
    demo = [
        _python(),
        _display_path(os.path.join(_REPO_ROOT, "tools", "demo.py")),
        "--config-file",
        _display_path(config_file) if config_file else "CONFIG.py",
        "--input",
        _display_path(records[0]["file_name"]) if records else "IMAGE_OR_FOLDER",
        "--output",
        os.path.join(output_dir, "demo"),
        "--weights",
        checkpoint,
        "--confidence-threshold",  # the report pictures' threshold
        f"{score_thresh:g}",
        *model_opts,
    ]
    lines.append("    " + " ".join(shlex.quote(a) for a in demo))
    lines += [
        "",
        "  Train on your own COCO json (the class names and count are read from it):",
        "    "
        + " ".join(
            [
                _python(),
                _display_path(os.path.join(_REPO_ROOT, "tools", "lazyconfig_train_net.py")),
                "--config-file",
                _own_data_config(config_file),
                "dataloader.train.dataset.json_file=/path/to/train.json",
                "dataloader.train.dataset.image_root=/path/to/images",
                "dataloader.test.dataset.json_file=/path/to/val.json",
                "dataloader.test.dataset.image_root=/path/to/images",
            ]
        ),
        "=" * 100,
    ]
    return "\n".join(lines)
