"""The dispatch shared by the op wrappers of :mod:`semianchor.layers`.

A wrapper documents its op, checks the one argument that fixes the device, and hands the rest to
:func:`dispatch`: validate the inputs (raising the user-facing errors) into the op's schema
arguments, then call ``torch.ops.semianchor.<op>`` or the op's pure-PyTorch reference
(:data:`semianchor.layers.reference.OPS`) with those same arguments.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .. import extension
from . import _selfcheck
from .reference import OPS as REFERENCE_OPS

__all__ = ["dispatch", "use_kernel"]


def use_kernel(op: str, device: torch.device) -> bool:
    """True when ``op`` runs as ``torch.ops.semianchor.<op>`` on ``device``: it has a kernel there
    and ``SEMIANCHOR_KERNELS`` is not ``reference`` (a CUDA kernel is first self-checked against its
    reference, once per process: :mod:`._selfcheck`). Otherwise the reference runs (with a one-time
    warning when the kernel is missing)."""
    if _selfcheck.kernels_mode() == "reference":
        return False
    if extension.has_ops(device, op):
        _selfcheck.ensure_checked(op, device)
        return True
    extension.warn_fallback_once(op, device)
    return False


def dispatch(op: str, device: torch.device, validate: Callable[[bool], Sequence]):
    """Run ``op`` on ``device``: ``validate(values)`` returns the op's schema arguments, validated
    and converted (float32 boxes, int64 indices, lists of Python numbers); ``values`` says whether
    it must also check the tensor values (not on the CPU kernels, which check them in C++ with the
    same messages: :mod:`._validation`). The kernel or the reference then gets those arguments."""
    kernel = use_kernel(op, device)
    args = validate(not (kernel and device.type == "cpu"))
    if kernel:
        return getattr(torch.ops.semianchor, op)(*args)
    return REFERENCE_OPS[op](*args)
