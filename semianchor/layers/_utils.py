"""Input validation and dispatch shared by the op wrappers of :mod:`semianchor.layers`."""

from __future__ import annotations

from typing import Sequence

import torch

from .. import extension
from . import _selfcheck


def as_float_boxes(x, name: str, shapes: str, dims: Sequence[int]) -> torch.Tensor:
    """``x`` as a float32 tensor of boxes (last dim 4) with one of ``dims`` dimensions.

    fp16 / bf16 / fp64 inputs are converted to fp32 (all kernels compute in fp32)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {shapes}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.dim() not in dims or x.shape[-1] != 4:
        raise ValueError(f"{name} must have shape {shapes}, got {tuple(x.shape)}")
    return x.float()


def as_index_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {x.dtype}")
    return x.long()


def check_same_device(device: torch.device, **tensors) -> None:
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise ValueError(f"{name} is on {t.device} but the other inputs are on {device}")


def check_gts(gt_boxes, gt_counts, num_images=None, values=True):
    """Validate padded GTs: gt_boxes (N, M, 4) float, gt_counts (N,) ints in [0, M].

    Returns them as float32 / int64. Valid GTs (m < gt_counts[n]) must be finite; padding is never
    read. ``values=False`` skips the checks that read the data (the CPU kernels run them in C++,
    without the latency of a dozen small parallel ATen ops)."""
    gt_boxes = as_float_boxes(gt_boxes, "gt_boxes", "(N, M, 4)", (3,))
    N, M = gt_boxes.shape[:2]
    gt_counts = as_index_tensor(gt_counts, "gt_counts")
    if gt_counts.shape != (N,):
        raise ValueError(f"gt_counts must have shape (N,) = ({N},), got {tuple(gt_counts.shape)}")
    if num_images is not None and N != num_images:
        raise ValueError(f"gt_boxes must hold N = {num_images} images, got {N}")
    check_same_device(gt_boxes.device, gt_counts=gt_counts)
    if not values:
        return gt_boxes, gt_counts
    if N and bool(((gt_counts < 0) | (gt_counts > M)).any()):
        raise ValueError(f"gt_counts must lie in [0, M] = [0, {M}], got {gt_counts.tolist()}")
    if N * M:
        valid = torch.arange(M, device=gt_boxes.device)[None, :] < gt_counts[:, None]
        if not bool(torch.isfinite(gt_boxes[valid]).all()):
            raise ValueError("gt_boxes holds non-finite coordinates in valid (non-padded) GTs")
    return gt_boxes, gt_counts


def check_values_in_python(kernel: bool, device: torch.device) -> bool:
    """Whether the wrapper must check data values itself: the CPU kernels do it in C++."""
    return not (kernel and device.type == "cpu")


def use_kernel(op: str, device: torch.device) -> bool:
    """True when the wrapper of ``op`` calls ``torch.ops.semianchor.<op>`` on ``device``: it has
    a kernel there and ``SEMIANCHOR_KERNELS`` is not ``reference`` (a CUDA kernel is first
    self-checked against its reference, once per process: :mod:`._selfcheck`). Otherwise the
    wrapper runs the reference (with a one-time warning when the kernel is missing)."""
    if _selfcheck.kernels_mode() == "reference":
        return False
    if extension.has_ops(device, op):
        _selfcheck.ensure_checked(op, device)
        return True
    extension.warn_fallback_once(op, device)
    return False
