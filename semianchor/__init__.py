"""semianchor: one-stage detectors that differ by label assignment, as Detectron2 META_ARCHs.

Importing the package registers its META_ARCHs, backbones and the embedded datasets.
"""

from ._noise import install_dependency_noise_filters

install_dependency_noise_filters()  # before detectron2.layers imports fvcore's scripted losses

from . import modeling  # noqa: F401,E402  (registers META_ARCHs / backbones)
from .config import add_semianchor_config  # noqa: F401,E402

try:  # dataset registration needs detectron2.data; keep the package importable without it
    from . import data  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__version__ = "0.1.0"
