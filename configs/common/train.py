"""Training options read by tools/lazyconfig_train_net.py: Detectron2's ``common/train.py`` with the
device resolved at run time and a seed.

``amp`` is CUDA only (ignored with a warning on CPU); ``eval_period``: evaluate every that many
iterations and at the end, 0: only at the end.
"""

from detectron2.model_zoo import get_config

train = get_config("common/train.py").train
# "auto": cuda when available, else cpu (resolved by the tool); or "cpu" / "cuda"
train.device = "auto"
train.seed = -1  # < 0: a random seed per run (logged); >= 0: seed + rank
