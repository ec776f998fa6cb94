"""Which implementation the op wrappers use, and the first-use self-check of the CUDA kernels.

``SEMIANCHOR_KERNELS``: ``compiled`` (default; also empty or ``auto``): the compiled kernel of
``semianchor._C`` where it has one for the device, else the pure-PyTorch ``*_reference``;
``reference``: always the references, on every device (slower, dense).

The first time a compiled op runs on a CUDA device in a process, :func:`ensure_checked` runs it
and its reference on a small fixed input on that device (two pyramid levels, 20 anchors, two
images with 3 and 1 GTs, 12 boxes for soft-NMS: milliseconds) and compares every output (integer
outputs exactly, float outputs to 1e-5); a mismatch raises :class:`KernelSelfCheckError`
naming the op, the output, the difference and the switch above. The CUDA kernels are compiled
where nvcc is found and cannot be tested on a machine without a GPU: this check is what stands
between an untested kernel and a silently wrong training. ``SEMIANCHOR_KERNEL_SELFCHECK=0``
turns it off (benchmarks timing the first call).

The check itself is device-agnostic (:func:`check_kernel` takes any device and any callable as
the kernel), so the tests run it on CPU against a deliberately wrong kernel.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch

from ..extension import env_flag
from .reference import OPS as REFERENCE_OPS

__all__ = [
    "CHECKED_DEVICE_TYPES",
    "KERNELS_ENV",
    "SELFCHECK_ENV",
    "KernelSelfCheckError",
    "check_kernel",
    "ensure_checked",
    "kernels_mode",
    "selfcheck_enabled",
]

KERNELS_ENV = "SEMIANCHOR_KERNELS"
SELFCHECK_ENV = "SEMIANCHOR_KERNEL_SELFCHECK"
CHECKED_DEVICE_TYPES = ("cuda",)
FLOAT_TOLERANCE = 1e-5

_checked: set = set()


class KernelSelfCheckError(RuntimeError):
    """A compiled kernel disagrees with its reference on the self-check input."""


def kernels_mode() -> str:
    """``"compiled"`` or ``"reference"`` (``SEMIANCHOR_KERNELS``; module docstring)."""
    value = os.environ.get(KERNELS_ENV, "").strip().lower()
    if value in ("", "auto", "compiled"):
        return "compiled"
    if value == "reference":
        return "reference"
    raise ValueError(f"{KERNELS_ENV}={value!r}: expected 'compiled' (default) or 'reference'")


def selfcheck_enabled() -> bool:
    """Whether ``SEMIANCHOR_KERNEL_SELFCHECK`` leaves the first-use check on (default: on)."""
    return env_flag(SELFCHECK_ENV, default=True)


# ------------------------------------------------------------------ the fixed input
LEVELS = [16, 4]  # a 4 x 4 grid of stride 8 and a 2 x 2 grid of stride 16, one anchor each


def _fixed_case(device: torch.device) -> Dict[str, torch.Tensor]:
    """Small fixed inputs shared by every op's check (built on CPU, then moved); no GT has two
    anchors at the same IoU, so no result rests on a tie-break."""
    g = torch.Generator().manual_seed(20240601)
    anchors = []
    for side, stride, size in ((4, 8, 12.0), (2, 16, 24.0)):
        for y in range(side):
            for x in range(side):
                cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
                anchors.append([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2])
    anchors = torch.tensor(anchors)
    gt_boxes = torch.tensor(
        [
            [[2.3, 3.1, 17.7, 14.2], [12.6, 10.45, 30.1, 29.35], [20.15, 1.55, 31.2, 9.05]],
            [[8.35, 6.2, 27.1, 25.45], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
        ]
    )
    regression = torch.randn(2, len(anchors), 4, generator=g) * 0.3
    boxes = torch.rand(12, 2, generator=g) * 20
    boxes = torch.cat([boxes, boxes + 4 + torch.rand(12, 2, generator=g) * 12], dim=1)
    case = dict(
        anchors=anchors,
        gt_boxes=gt_boxes,
        gt_counts=torch.tensor([3, 1]),
        regression=regression,
        nms_boxes=boxes,
        nms_scores=torch.rand(12, generator=g) * 0.9 + 0.05,
        nms_classes=torch.randint(0, 2, (12,), generator=g),
    )
    return {k: v.to(device) for k, v in case.items()}


# Per op, the schema arguments of its check on the fixed case. The kernel and its reference
# (:data:`semianchor.layers.reference.OPS`) are called with the same arguments.
def _atss_candidates_args(c):
    return (c["anchors"], c["gt_boxes"], c["gt_counts"], LEVELS, 3, 1, [])


def _atss_assign_args(c):
    cand_idx, cand_iou = REFERENCE_OPS["atss_candidates"](*_atss_candidates_args(c))
    return (cand_idx, cand_iou, c["anchors"], c["gt_boxes"], c["gt_counts"], 0.01)


# op -> (the arguments of its check on the case, names of the outputs)
CHECKS: Dict[str, Tuple[Callable, Sequence[str]]] = {
    "iou_after_regression": (
        lambda c: (
            c["anchors"],
            c["regression"],
            c["gt_boxes"],
            c["gt_counts"],
            None,
            "deltas",
            [10.0, 10.0, 5.0, 5.0],
            math.log(1000 / 16),
            None,
        ),
        ("pred_boxes", "iou", "giou", "gt_index"),
    ),
    "atss_candidates": (_atss_candidates_args, ("cand_idx", "cand_iou")),
    "atss_assign": (_atss_assign_args, ("matched_gt", "matched_score", "threshold")),
    "max_iou_match": (
        lambda c: (
            c["anchors"],
            c["gt_boxes"],
            c["gt_counts"],
            LEVELS,
            [0.3, 0.5],
            [0, -1, 1],
            True,
            True,
        ),
        ("matched_idx", "match_labels", "max_iou"),
    ),
    "topn_iou_match": (
        lambda c: (c["anchors"], c["gt_boxes"], c["gt_counts"], LEVELS, 4, True),
        ("matched_gt", "iou"),
    ),
    "soft_nms": (
        lambda c: (
            c["nms_boxes"],
            c["nms_scores"],
            c["nms_classes"],
            "linear",
            0.3,
            0.5,
            0.001,
            -1,
        ),
        ("keep", "scores"),
    ),
}


def _difference(got: torch.Tensor, want: torch.Tensor) -> Optional[str]:
    """None when equal (floats within FLOAT_TOLERANCE), else a description of the difference."""
    if got.shape != want.shape:
        return f"shape {tuple(got.shape)} instead of {tuple(want.shape)}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} instead of {want.dtype}"
    if got.is_floating_point():
        both_nan = torch.isnan(got) & torch.isnan(want)
        diff = torch.where(both_nan, torch.zeros_like(got), (got.double() - want.double()).abs())
        worst = float(diff.max()) if diff.numel() else 0.0
        if worst <= FLOAT_TOLERANCE and not torch.isnan(diff).any():
            return None
        return f"max |difference| {worst:.3g} (tolerance {FLOAT_TOLERANCE:g})"
    wrong = int((got != want).sum())
    if wrong == 0:
        return None
    return f"{wrong} of {got.numel()} values differ"


def check_kernel(op: str, device: Union[str, torch.device], kernel: Optional[Callable] = None):
    """Run ``kernel`` (default: ``torch.ops.semianchor.<op>``) and ``<op>_reference`` on the
    fixed input on ``device``; raise :class:`KernelSelfCheckError` on any difference."""
    if op not in CHECKS:
        raise ValueError(f"no self-check for op {op!r}; known: {sorted(CHECKS)}")
    device = torch.device(device)
    make_args, names = CHECKS[op]
    kernel = kernel if kernel is not None else getattr(torch.ops.semianchor, op)
    with torch.no_grad():
        args = make_args(_fixed_case(device))
        got = kernel(*args)
        want = REFERENCE_OPS[op](*args)
    problems = []
    for name, g, w in zip(names, got, want):
        diff = _difference(g.to(w.device), w)
        if diff is not None:
            problems.append(f"{name}: {diff}")
    if len(got) != len(want):
        problems.append(f"{len(got)} outputs instead of {len(want)}")
    if problems:
        raise KernelSelfCheckError(
            f"semianchor self-check: the compiled kernel torch.ops.semianchor.{op} on {device} "
            f"disagrees with {op}_reference on a small fixed input ({'; '.join(problems)}). "
            f"Set {KERNELS_ENV}=reference to run every op on its pure-PyTorch reference "
            "(correct, slower), and report the mismatch."
        )


def _kernel_for(op: str) -> Callable:
    return getattr(torch.ops.semianchor, op)


def ensure_checked(op: str, device: Union[str, torch.device]) -> None:
    """Self-check ``op``'s compiled kernel once per process and device, on the device types in
    :data:`CHECKED_DEVICE_TYPES` (CUDA), unless ``SEMIANCHOR_KERNEL_SELFCHECK=0``. A failed
    check raises now and again on every later call (nothing is marked as checked)."""
    device = torch.device(device)
    if not selfcheck_enabled() or device.type not in CHECKED_DEVICE_TYPES or op not in CHECKS:
        return
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = (op, str(device))
    if key in _checked:
        return
    check_kernel(op, device, _kernel_for(op))
    _checked.add(key)
