"""Writing an assignment analysis: markdown, CSV, plots and a one-screen summary.

:func:`write_analysis` takes the :class:`~semianchor.analysis.assignment.AssignmentStats` of one
or more assigners on the same images and writes under ``output_dir``:

- ``README.md``: the command, the dataset, the tables (overall, per size bin, per level, per
  class), the smallest GTs without a positive, and the plots;
- ``overall.csv``, ``size_bins.csv``, ``levels.csv``, ``classes.csv``, ``per_gt.csv``;
- ``positives_vs_size.png`` (mean positives per GT and share of GTs without a positive against
  sqrt(area), one curve per assigner), ``level_shares.png`` (share of positives per level),
  ``iou_of_positives.png`` (histograms before / after regression), ``soft_targets.png`` (when an
  assigner gives soft targets or weights).

:func:`write_examples` draws images with GTs that got no positive as the assignment picture
(:func:`semianchor.visualization.draw_assignment`). Everything is drawn with matplotlib's Agg
canvas (no display).
"""

import csv
import math
import os
from typing import Dict, List, Sequence

import numpy as np

from ..visualization.canvas import new_figure, save_figure
from .assignment import (
    FINE_SIZE_EDGES,
    IOU_BINS,
    VALUE_BINS,
    VALUE_RANGE,
    AssignmentStats,
    size_bin_labels,
)

__all__ = ["format_value", "summary_lines", "write_analysis", "write_examples"]

# the overall table's columns in the markdown (all of them go to the CSV)
_OVERALL_MD = (
    "assigner",
    "images",
    "GTs",
    "pos / GT mean",
    "pos / GT median",
    "pos / GT p10",
    "GTs without positive",
    "share without positive",
    "pos:neg:ign anchors",
    "mean IoU of positives",
    "GTs on >1 level",
)


def format_value(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _empty(v) -> bool:
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def _markdown_table(rows: List[Dict], columns: Sequence[str] = ()) -> List[str]:
    """A markdown table; columns without a value in any row are left out (all in the CSVs)."""
    if not rows:
        return ["(none)"]
    columns = list(columns) or list(dict.fromkeys(k for r in rows for k in r))
    columns = [c for c in columns if any(not _empty(r.get(c)) for r in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(format_value(r.get(c, "")) for c in columns) + " |")
    return lines


def _csv_value(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def _write_csv(path: str, rows: List[Dict]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k, "")) for k in columns})
    return path


def _save(fig, path: str) -> str:
    fig.tight_layout()
    return save_figure(fig, path)


_STYLES = [(m, ls) for ls in ("-", "--", ":") for m in ("o", "s", "^", "D", "v", "x")]


def plot_positives_vs_size(stats: Sequence[AssignmentStats], path: str) -> str:
    """Mean positives per GT (left, symmetric-log axis) and share of GTs without a positive
    (right) per sqrt(area) bin, one curve per assigner; only the bins that hold GTs."""
    edges = FINE_SIZE_EDGES
    labels = size_bin_labels(edges)
    tables = [s.gt_table() for s in stats]
    occupied = [
        any(((t["size"] >= lo) & (t["size"] < hi)).any() for t in tables)
        for lo, hi in zip(edges[:-1], edges[1:])
    ]
    bins = [k for k, o in enumerate(occupied) if o] or [0]
    bins = list(range(bins[0], bins[-1] + 1))
    x = np.arange(len(bins))
    fig = new_figure(1200, 480)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for j, (s, gt) in enumerate(zip(stats, tables)):
        means, zeros = [], []
        for k in bins:
            sel = (gt["size"] >= edges[k]) & (gt["size"] < edges[k + 1])
            n = gt["num_pos"][sel]
            means.append(n.mean() if len(n) else np.nan)
            zeros.append((n == 0).mean() if len(n) else np.nan)
        marker, style = _STYLES[j % len(_STYLES)]
        kw = dict(marker=marker, linestyle=style, label=s.name, alpha=0.85)
        left.plot(x, means, **kw)
        right.plot(x, zeros, **kw)
    for ax, ylabel in ((left, "mean positives per GT"), (right, "share of GTs without positive")):
        ax.set_xticks(x)
        ax.set_xticklabels([labels[k] for k in bins], rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("GT size sqrt(area) in the input image (px)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    left.set_yscale("symlog", linthresh=1.0)
    left.set_ylim(bottom=0)
    right.set_ylim(-0.02, 1.02)
    left.legend(fontsize=8)
    return _save(fig, path)


def plot_level_shares(stats: Sequence[AssignmentStats], path: str) -> str:
    """Share of the positives on each pyramid level, grouped bars per assigner."""
    fig = new_figure(900, 420)
    ax = fig.add_subplot(1, 1, 1)
    n = max(len(stats), 1)
    width = 0.8 / n
    for j, s in enumerate(stats):
        final = s.stage_names[-1] if s.stage_names else "final"
        pos = s.anchor_counts[final][:, 0].astype(np.float64) if s.anchor_counts else np.zeros(0)
        share = pos / max(pos.sum(), 1)
        ax.bar(np.arange(len(share)) + j * width - 0.4 + width / 2, share, width, label=s.name)
    num_levels = max((len(s.level_names) for s in stats), default=0)
    names = [  # detectors name their levels differently (p3-p7, d1-d6): every name of level k
        " / ".join(dict.fromkeys(s.level_names[k] for s in stats if k < len(s.level_names)))
        for k in range(num_levels)
    ]
    ax.set_xticks(np.arange(num_levels))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("share of positive anchors")
    ax.set_xlabel("pyramid level, finest first")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_iou_histograms(stats: Sequence[AssignmentStats], path: str) -> str:
    """IoU of positive anchors with their GT (density), before and, where the head ran, after
    regression."""
    after = [s for s in stats if s.reg_iou_hist.sum()]
    fig = new_figure(1200 if after else 700, 420)
    centres = (np.arange(IOU_BINS) + 0.5) / IOU_BINS
    panels = [("anchor (before regression)", "pos_iou_hist", stats)]
    if after:
        panels.append(("predicted box (after regression)", "reg_iou_hist", after))
    for k, (what, attr, group) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for s in group:
            h = getattr(s, attr).astype(np.float64)
            if h.sum():
                ax.step(centres, h / h.sum(), where="mid", label=s.name)
        ax.set_xlabel(f"IoU of the {what} with its GT")
        ax.set_ylabel("share of positives")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_value_histograms(stats: Sequence[AssignmentStats], path: str) -> str:
    """Histograms of the soft targets / weights the assigners give positives (one panel each)."""
    names = sorted({n for s in stats for n in s.value_hist})
    fig = new_figure(max(420 * len(names), 500), 400)
    for k, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), k + 1)
        top = VALUE_RANGE[name]
        centres = (np.arange(VALUE_BINS) + 0.5) * top / VALUE_BINS
        for s in stats:
            if name in s.value_hist and s.value_hist[name].sum():
                h = s.value_hist[name].astype(np.float64)
                ax.step(centres, h / h.sum(), where="mid", label=s.name)
        ax.set_xlabel(name + (f" (last bin: >= {top:g})" if name == "weight" else ""))
        ax.set_ylabel("share of positives")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def write_examples(
    models: Sequence,
    stats: Sequence[AssignmentStats],
    records: Sequence[Dict],
    mapper,
    output_dir: str,
    class_names: Sequence[str] = (),
    iteration: int = 0,
) -> Dict[str, List[str]]:
    """The example images of GTs without a positive: per assigner, each image it kept
    (``stats[k].examples``, the most such GTs first) drawn as the assignment picture
    (:func:`~semianchor.visualization.draw_assignment`: a GT without a positive is dashed)
    under ``output_dir/examples/`` as .jpg. The image is mapped and assigned again by its
    :class:`~semianchor.analysis.run.AnalysisModel` (``models[k]``, same ``iteration``).

    Returns, per assigner name, the paths written relative to ``output_dir``.

    Raises:
        RuntimeError: the assignment drawn differs from the one counted (an assigner that is
            not deterministic).
    """
    from ..engine.assignment import image_assignments
    from ..visualization import draw_assignment, input_image_rgb

    examples: Dict[str, List[str]] = {}
    for m, s in zip(models, stats):
        for ex in sorted(s.examples, reverse=True):
            mapped = mapper(dict(records[ex.image_index]))
            (view,) = image_assignments(m.assign([mapped], iteration))
            zero = np.bincount(view.matched_gt.astype(np.int64), minlength=len(view.gt_boxes)) == 0
            if view.gt_boxes.shape != ex.gt_boxes.shape or (zero != ex.zero).any():
                raise RuntimeError(
                    f"{s.name}: the assignment of {ex.file_name} drawn for the example differs "
                    "from the one counted (the assigner is not deterministic)"
                )
            image = input_image_rgb(mapped, mapper.image_format)
            stem = os.path.splitext(os.path.basename(ex.file_name))[0]
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in s.name)
            rel = f"examples/{safe}_{stem}.jpg"
            draw_assignment(
                image,
                view,
                class_names,
                os.path.join(output_dir, rel),
                title=f"{s.name}: {int(ex.zero.sum())} of {len(ex.zero)} GTs without a positive "
                f"(dashed)\n{os.path.basename(ex.file_name)} "
                f"({image.shape[1]}x{image.shape[0]} input)",
            )
            examples.setdefault(s.name, []).append(rel)
    return examples


def summary_lines(stats: Sequence[AssignmentStats]) -> List[str]:
    """The one-screen summary: per assigner its positives per GT, GTs without a positive and
    pos:neg:ignored, plus its stage / location / soft-target lines."""
    lines = []
    for s in stats:
        o = s.tables()["overall"][0]
        lines.append(
            f"{s.name:>18}: {o['GTs']} GTs in {o['images']} images; positives per GT mean "
            f"{format_value(o['pos / GT mean'])} (median {format_value(o['pos / GT median'])}); "
            f"{o['GTs without positive']} GTs without a positive "
            f"({100 * (o['share without positive'] or 0):.1f}%); "
            f"pos:neg:ign anchors {o['pos:neg:ign anchors']}"
        )
        extra = [
            f"{k} {format_value(v)}"
            for k, v in o.items()
            if k.startswith(("pos:neg:ign ", "pos / GT ", "mean ", "theta"))
            and k not in ("pos:neg:ign anchors", "pos / GT mean", "pos / GT median")
            and not k.startswith("pos / GT p")
            and not (isinstance(v, float) and math.isnan(v))
        ]
        if extra:
            lines.append(" " * 20 + "; ".join(extra))
    return lines


def write_analysis(
    stats: Sequence[AssignmentStats],
    output_dir: str,
    header: Sequence[str] = (),
    class_names: Sequence[str] = (),
    examples: Dict[str, List[str]] = None,
) -> Dict[str, str]:
    """Write the tables, CSVs and plots (module docstring); ``header``: markdown lines put first
    (command, dataset, timing); ``examples``: per assigner, paths of its example pictures
    (relative to ``output_dir``). Returns the paths written by name."""
    os.makedirs(output_dir, exist_ok=True)
    tables = {"overall": [], "size": [], "levels": [], "classes": []}
    for s in stats:
        for k, rows in s.tables(class_names).items():
            tables[k] += rows
    written = {
        "overall.csv": _write_csv(os.path.join(output_dir, "overall.csv"), tables["overall"]),
        "size_bins.csv": _write_csv(os.path.join(output_dir, "size_bins.csv"), tables["size"]),
        "levels.csv": _write_csv(os.path.join(output_dir, "levels.csv"), tables["levels"]),
        "classes.csv": _write_csv(os.path.join(output_dir, "classes.csv"), tables["classes"]),
    }
    gt_rows = []
    for s in stats:
        gt = s.gt_table()
        for j in range(len(gt["size"])):
            gt_rows.append({"assigner": s.name, **{k: v[j].item() for k, v in gt.items()}})
    written["per_gt.csv"] = _write_csv(os.path.join(output_dir, "per_gt.csv"), gt_rows)
    plots = {
        "positives_vs_size.png": plot_positives_vs_size,
        "level_shares.png": plot_level_shares,
        "iou_of_positives.png": plot_iou_histograms,
    }
    if any(s.value_hist for s in stats):
        plots["soft_targets.png"] = plot_value_histograms
    for name, fn in plots.items():
        written[name] = fn(stats, os.path.join(output_dir, name))

    md = list(header) + ["", "## Overall", ""]
    md += _markdown_table(tables["overall"], _OVERALL_MD)
    extra_cols = [c for r in tables["overall"] for c in r if c not in _OVERALL_MD and c != "images"]
    extra_cols = [
        c for c in dict.fromkeys(extra_cols) if any(not _empty(r.get(c)) for r in tables["overall"])
    ]
    if extra_cols:
        md += ["", "Method-specific columns (stages, locations, soft targets):", ""]
        md += _markdown_table(tables["overall"], ["assigner"] + extra_cols)
    md += ["", "![positives per GT against GT size](positives_vs_size.png)", ""]
    md += ["## Per GT size (sqrt(area) in the input image, px)", ""]
    md += _markdown_table(tables["size"])
    md += ["", "## Per pyramid level", ""]
    md += _markdown_table(tables["levels"])
    md += ["", "![share of positives per level](level_shares.png)", ""]
    md += ["## Per class", ""]
    md += _markdown_table(tables["classes"])
    md += ["", "## GTs without a positive: the smallest", ""]
    for s in stats:
        worst = s.worst(class_names=class_names)
        md += [f"**{s.name}**: " + ("none" if not worst else "")]
        if worst:
            md += [""] + _markdown_table(worst) + [""]
        for p in (examples or {}).get(s.name, []):
            md += [f"![{s.name}: GTs without a positive dashed]({p})"]
        md += [""]
    md += ["## IoU of positives with their GT", "", "![IoU histograms](iou_of_positives.png)"]
    if "soft_targets.png" in written:
        md += ["", "## Soft targets and weights of positives", "", "![](soft_targets.png)"]
    written["README.md"] = os.path.join(output_dir, "README.md")
    with open(written["README.md"], "w") as f:
        f.write("\n".join(md) + "\n")
    return written
