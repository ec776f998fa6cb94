"""The assignment picture, drawn as in the papers' figures: which anchors a detector's label
assigner makes positive for which GT.

:func:`draw_assignment` is the one picture of an assignment: the end-of-training report
(``semianchor.engine.report``), ``tools/visualize_assignment.py`` and the example images of
``tools/analyze_assignment.py`` all draw it from an
:class:`~semianchor.engine.assignment.ImageAssignment`.
"""

import textwrap
from typing import List, Sequence

import numpy as np

from ..engine.assignment import ImageAssignment
from .canvas import box_patch, class_name, drawn_scale, new_figure, save_figure, show_image

__all__ = ["draw_assignment"]

# SAD's picture draws the A anchors of one positive location for at most this many GTs
MAX_AC_LOCATIONS = 3


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
    scale = drawn_scale(h, w)
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
    fig = new_figure(fig_w, fig_h)
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
            show_image(ax, light, what or ("" if title else f"{a.method}: positive anchors per GT"))
            handles = _draw_positive_anchors(ax, view, class_names, gt_colors, show_anchor_boxes)
        else:
            show_image(ax, light, "positive locations and the AC targets of their anchors")
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
    return save_figure(fig, out_path)


def _gt_colors(m: int) -> List[tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    # alternate the two halves of tab20 so that neighbouring GT indices get distinct hues
    return [cmap((2 * g) % 20 + ((2 * g) // 20) % 2)[:3] for g in range(m)]


def _per_gt(matched_gt: np.ndarray, m: int) -> np.ndarray:
    """(m,) how many entries are matched to each GT."""
    return np.bincount(matched_gt.astype(np.int64), minlength=m)[:m] if m else np.zeros(0, int)


def _draw_gt_boxes(ax, a: ImageAssignment, class_names, gt_colors, per_gt) -> None:
    for g in range(len(a.gt_boxes)):
        x0, y0 = (float(v) for v in a.gt_boxes[g, :2])
        ax.add_patch(
            box_patch(
                a.gt_boxes[g],
                edgecolor=gt_colors[g],
                linewidth=2.0,
                linestyle="-" if per_gt[g] else "--",
            )
        )
        ax.text(
            x0 + 1,
            y0 + 1,
            f"{class_name(class_names, int(a.gt_classes[g]))}: {per_gt[g]}",
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
                ax.add_patch(box_patch(box, edgecolor=color, linewidth=0.6, alpha=0.7))
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
                box_patch(
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
