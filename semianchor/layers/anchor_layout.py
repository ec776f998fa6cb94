"""How the kernels see the anchors: per-level grids and candidate counts.

detectron2's anchor generator lays each pyramid level out as a regular grid; the kernels recognise
it (one O(R) pass) and then visit only a window of anchors per GT. The functions here are the
Python side of that recognition, for inspection, for the tests and for passing grids explicitly;
they never change a result, only which path the kernels take.
"""

from __future__ import annotations

from typing import List, Sequence

import torch

from .. import extension
from ._validation import as_float_boxes
from .boxes import anchor_centers

__all__ = ["infer_level_grids", "iou_match_levels", "num_candidates"]

# The 7 grid floats of a level that is not a grid (W = 0: the kernels scan it exhaustively).
NO_GRID = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def num_candidates(num_anchors_per_level: Sequence[int], k_per_level: int) -> int:
    """C = sum_l min(k_per_level, R_l): the ATSS candidates per GT."""
    return sum(min(int(n), k_per_level) for n in num_anchors_per_level)


def infer_level_grids(
    anchors: torch.Tensor, num_anchors_per_level: Sequence[int], anchors_per_location: int
) -> List[float]:
    """Recognise detectron2's anchor layout: 7 floats per level for the ATSS kernels' grid path.

    Level l is a grid when its R_l = H * W * A anchors have centres within ``delta`` of
    ``(ox + i * sx, oy + j * sy)`` for anchor ``(j * W + i) * A + a`` (A anchors per location
    fastest, then x, then y, as ``DefaultAnchorGenerator``), with sx, sy > 0 and delta at most a
    quarter of the stride. The values are (ox, oy, sx, sy, W, H, delta); W = 0 marks a level that is
    not a grid (exhaustive path). ``delta`` (the float rounding of the centres, ~1e-4 px) enters the
    kernels' exact stopping rule, so any layout within delta of the grid gives exact results.
    """
    out: List[float] = []
    A = int(anchors_per_location)
    centers = anchor_centers(anchors).double()
    begin = 0
    for R_l in (int(n) for n in num_anchors_per_level):
        c, begin = centers[begin : begin + R_l], begin + R_l
        out.extend(_level_grid(c, R_l, A))
    return out


def _level_grid(c: torch.Tensor, R_l: int, A: int) -> List[float]:
    if R_l == 0 or A <= 0 or R_l % A:
        return NO_GRID
    P = R_l // A
    loc = c.view(P, A, 2)
    xs, ys = loc[:, 0, 0], loc[:, 0, 1]
    drops = torch.nonzero(xs[1:] <= xs[:-1])  # x restarts (or stays, W = 1) on a new row
    W = int(drops[0, 0]) + 1 if drops.numel() else P
    if P % W:
        return NO_GRID
    H = P // W
    ox, oy = float(xs[0]), float(ys[0])
    sx = (float(xs[W - 1]) - ox) / (W - 1) if W > 1 else 1.0
    sy = (float(ys[(H - 1) * W]) - oy) / (H - 1) if H > 1 else 1.0
    if not (sx > 0 and sy > 0):
        return NO_GRID
    i = torch.arange(W, dtype=torch.float64, device=c.device)
    j = torch.arange(H, dtype=torch.float64, device=c.device)
    ideal_x = (ox + i * sx).view(1, W, 1)
    ideal_y = (oy + j * sy).view(H, 1, 1)
    grid = loc.view(H, W, A, 2)
    delta = torch.maximum(
        (grid[..., 0] - ideal_x).abs().max(), (grid[..., 1] - ideal_y).abs().max()
    )
    delta = float(delta)
    limit = 0.25 * min(sx if W > 1 else float("inf"), sy if H > 1 else float("inf"))
    if not (delta <= limit):  # also rejects NaN
        return NO_GRID
    return [ox, oy, sx, sy, float(W), float(H), delta]


def iou_match_levels(anchors: torch.Tensor, num_anchors_per_level=None, grid: bool = True):
    """The levels the IoU-matching kernels see (inspection and tests; needs the compiled
    extension).

    Args:
        anchors: (R, 4) or (N, R, 4); num_anchors_per_level, grid: as
            :func:`~semianchor.layers.max_iou_match`.

    Returns:
        Per anchor set (1, or N for per-image anchors) a list of levels, each a dict with
        ``begin``, ``count`` and ``grid``: None (scanned anchor by anchor) or ``(W, H, A)``.
    """
    if not extension.load_ops():
        raise RuntimeError(f"semianchor._C is not available: {extension.load_error()!r}")
    anchors = as_float_boxes(anchors, "anchors", "(R, 4) or (N, R, 4)", (2, 3)).cpu()
    levels = [] if num_anchors_per_level is None else [int(n) for n in num_anchors_per_level]
    plan = torch.ops.semianchor.iou_match_plan(anchors, levels, bool(grid))
    out = []
    for per_set in plan.tolist():
        out.append(
            [
                {
                    "begin": int(p[0]),
                    "count": int(p[1]),
                    "grid": (int(p[2]), int(p[3]), int(p[4])) if p[2] > 0 else None,
                }
                for p in per_set
                if p[1] > 0
            ]
        )
    return out
