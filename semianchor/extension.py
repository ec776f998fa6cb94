"""Loading of the compiled operators ``semianchor._C``.

``semianchor._C`` is a plain shared library whose static initialisers register the
``torch.ops.semianchor.*`` schemas (``TORCH_LIBRARY``) and one implementation per backend
(``TORCH_LIBRARY_IMPL``, CPU and, when built with nvcc, CUDA). It is loaded explicitly here, never
as a side effect of an unrelated import, and its Python-side fake kernels and autocast rules
(:mod:`semianchor._meta_registrations`) are registered right after. The Python wrappers in
:mod:`semianchor.layers` ask :func:`has_ops` whether a kernel exists for the device at hand and
otherwise fall back to the pure-PyTorch ``*_reference`` functions (with a one-time warning). This
module imports nothing from :mod:`semianchor.layers`: the dependency runs one way, layers to here.

With the environment variable ``SEMIANCHOR_REQUIRE_EXT=1`` (set by ``make test`` and so by CI) a
missing or unloadable ``_C`` is an error instead: :func:`load_ops` raises, and the kernel tests
fail rather than skip, so a broken build cannot pass the suite by skipping every kernel test.
"""

from __future__ import annotations

import importlib
import os
import warnings
from typing import Optional, Union

import torch

from . import _meta_registrations

__all__ = ["OP_NAMES", "REQUIRE_ENV", "extension_required", "has_ops", "load_ops", "load_error"]

REQUIRE_ENV = "SEMIANCHOR_REQUIRE_EXT"


def extension_required() -> bool:
    """Whether ``SEMIANCHOR_REQUIRE_EXT`` asks for the compiled kernels (1/true/yes/on)."""
    return env_flag(REQUIRE_ENV, default=False)


def env_flag(name: str, default: bool) -> bool:
    """The boolean environment variable ``name``: 1/true/yes/on or 0/false/no/off (any case,
    surrounding blanks ignored); unset or empty gives ``default``; anything else is an error."""
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r}: expected 1/true/yes/on or 0/false/no/off")


OP_NAMES = (
    "iou_after_regression",
    "atss_candidates",
    "atss_assign",
    "max_iou_match",
    "topn_iou_match",
    "soft_nms",
)

_state = {"loaded": None, "error": None}


def load_ops() -> bool:
    """Import ``semianchor._C`` (once) and register the Python-side fake kernels and autocast rules.

    Returns True when the extension is available. A missing or broken build is remembered (see
    :func:`load_error`) and the wrappers use the references instead, unless
    ``SEMIANCHOR_REQUIRE_EXT=1``: then it raises RuntimeError naming the cause.
    """
    if _state["loaded"] is None:
        try:
            importlib.import_module("semianchor._C")
        except (ImportError, OSError) as e:  # not built, or built against another torch
            _state["loaded"], _state["error"] = False, e
        else:
            _meta_registrations.register_python_kernels()
            _state["loaded"] = True
    if not _state["loaded"] and extension_required():
        raise RuntimeError(
            f"{REQUIRE_ENV} is set but semianchor._C cannot be loaded: {_state['error']!r}. Build "
            "it with `make install` (or `python setup.py build_ext --inplace`), or unset "
            f"{REQUIRE_ENV} to run on the slower pure-PyTorch references."
        ) from _state["error"]
    return _state["loaded"]


def load_error() -> Optional[BaseException]:
    """The exception that prevented loading ``semianchor._C``, if any (never raises)."""
    try:
        load_ops()
    except RuntimeError:  # SEMIANCHOR_REQUIRE_EXT: the cause is what the caller asks for
        pass
    return _state["error"]


def _dispatch_key(device: Union[str, torch.device, None]) -> str:
    device = torch.device("cpu" if device is None else device)
    return {"cpu": "CPU", "cuda": "CUDA"}.get(device.type, device.type.upper())


def has_ops(device: Union[str, torch.device, None] = None, op: Optional[str] = None) -> bool:
    """Whether ``semianchor._C`` has a kernel for ``device`` (default CPU).

    Args:
        device: a device or device type; the question is asked of its backend (CPU, CUDA).
        op: one of :data:`OP_NAMES`; default: all of them.
    """
    if not load_ops():
        return False
    key = _dispatch_key(device)
    names = OP_NAMES if op is None else (op,)
    return all(
        torch._C._dispatch_has_kernel_for_dispatch_key(f"semianchor::{name}", key) for name in names
    )


_warned = set()


def warn_fallback_once(op: str, device: Union[str, torch.device]) -> None:
    """Warn, once per (op, backend), that the pure-PyTorch reference replaces a missing kernel."""
    key = (op, _dispatch_key(device))
    if key in _warned:
        return
    _warned.add(key)
    reason = f" ({load_error()!r})" if load_error() is not None else ""
    warnings.warn(
        f"semianchor._C has no {key[1]} kernel for {op}{reason}; using the slower, dense "
        f"pure-PyTorch reference {op}_reference. Build the extension with `make install`.",
        RuntimeWarning,
        stacklevel=4,  # the op wrapper (this, use_kernel, dispatch, the wrapper)
    )
