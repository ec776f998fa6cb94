"""Optimizers: Detectron2's ``common/optim.py``. ``params.model`` is filled in by the tool with the
model before instantiation."""

from detectron2.model_zoo import get_config

_optim = get_config("common/optim.py")
SGD = _optim.SGD
AdamW = _optim.AdamW
