"""The training-loss picture, from the ``metrics.json`` Detectron2 writes during training."""

import json
import os
from typing import Dict, List

import numpy as np

from .canvas import new_figure, save_figure

__all__ = ["plot_loss_curve"]


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

    fig = new_figure(820, 480)
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
    return save_figure(fig, out_path)
