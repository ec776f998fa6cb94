"""Narrow filters for start-up noise that comes from dependencies, not from semianchor.

Each filter names one message and the module that emits it, so any other warning still shows:

- ``torch.jit.script`` FutureWarning: fvcore's ``focal_loss`` module scripts a function at import
  (reached through ``detectron2.layers``); nothing in semianchor scripts.
- ``torch.meshgrid`` UserWarning (no ``indexing=``): Detectron2's ``DefaultAnchorGenerator``
  (``_create_grid_offsets``); semianchor's own meshgrid calls pass ``indexing``.
- ``pkg_resources`` deprecation UserWarning: ``detectron2.model_zoo`` imports it, and the configs
  take Detectron2's common configs through ``detectron2.model_zoo.get_config`` (imported by a
  config, the warning names ``detectron2.config.lazy``, whose import hook runs the import).
- "No CUDA runtime is found, using CUDA_HOME=..." (a log record of ``torch.utils.cpp_extension``,
  imported by Detectron2's ``collect_env_info`` in ``default_setup``): only dropped on a machine
  without CUDA, where it says nothing a CPU run needs.
"""

import logging
import warnings

import torch

__all__ = ["install_dependency_noise_filters"]


class _NoCudaRuntimeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No CUDA runtime is found")


_installed = False


def install_dependency_noise_filters() -> None:
    """Install the filters above (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    warnings.filterwarnings(
        "ignore",
        message=r"`torch\.jit\.script` is deprecated",
        category=FutureWarning,
        module=r"torch\.jit\._script",
    )
    warnings.filterwarnings(
        "ignore",
        message=r"torch\.meshgrid: in an upcoming release, "
        r"it will be required to pass the indexing",
        category=UserWarning,
        module=r"torch\.functional",
    )
    warnings.filterwarnings(
        "ignore",
        message=r"pkg_resources is deprecated as an API",
        category=UserWarning,
        module=r"detectron2\.(model_zoo\.model_zoo|config\.lazy)",  # a config's import: lazy.py
    )
    if not torch.cuda.is_available():
        logging.getLogger("torch.utils.cpp_extension").addFilter(_NoCudaRuntimeFilter())
