"""The start-up check of a config that was made for pretrained weights.

A config whose network is built for ImageNet weights (PADet's VGG-16 has no normalisation layer;
its ResNet-101 has frozen BN) names them in ``train.init_checkpoint_expected`` (a description
of the weights and how to get them). Training it with an empty ``train.init_checkpoint`` trains
that network from random initialisation, which is not the recipe the config reproduces: the
training tool warns at start (:func:`warn_if_missing_init_weights`).
"""

import logging
import warnings
from typing import Optional

__all__ = ["missing_init_weights_message", "warn_if_missing_init_weights"]


def missing_init_weights_message(cfg, resuming: bool = False) -> Optional[str]:
    """The warning for ``cfg`` (a LazyConfig), or None: no expected weights, weights given, or a
    run that resumes from its own checkpoint."""
    train = cfg.train
    expected = train.get("init_checkpoint_expected", None)
    if not expected or resuming or str(train.get("init_checkpoint", "") or "").strip():
        return None
    return (
        f"This config is made for pretrained weights ({expected}) but train.init_checkpoint is "
        "empty: the encoder trains from random initialisation, not the recipe the config "
        "reproduces. Set train.init_checkpoint=<weights>, or train.init_checkpoint_expected=None "
        "to train from scratch on purpose."
    )


def warn_if_missing_init_weights(
    cfg, resuming: bool = False, logger: Optional[logging.Logger] = None
) -> Optional[str]:
    """Log and ``warnings.warn`` :func:`missing_init_weights_message`; returns it (or None)."""
    message = missing_init_weights_message(cfg, resuming)
    if message is not None:
        (logger or logging.getLogger(__name__)).warning(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return message
