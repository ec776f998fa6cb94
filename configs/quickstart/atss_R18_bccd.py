"""The README's main job: ATSS (anchor-based) R-18-FPN (64 channels, from scratch) on BCCD, the
real blood-cell dataset shipped in the package (``bccd_train`` / ``bccd_val``, no download).

The quickstart ATSS model of ``atss_R18_shapes.py`` (``configs/common/quickstart.py``: R-18 with
BN, 64-channel FPN/head, anchor = 4 x stride) with the small-image BCCD loader
(``configs/common/data/bccd.py``: ~256 px, batch 8) and its LR schedule (warmup, x0.1 at 75% and
90%) compressed to 180 iterations (~5 epochs): ~2.1 s per iteration on 2 free CPU cores, so
about 7-8 minutes with evaluation. benchmarks/ASSIGNERS.md records AP50 51.9-58.4 at 150
iterations (two seeds), too close to the 50 a first run should clearly pass; measured at 180:
AP 38.0 / AP50 76.7 (seed 0, the default) and AP 38.6 / AP50 78.3 (seed 1).
"""

from semianchor.data import BCCD_CLASS_NAMES

from ..common.data.bccd import dataloader
from .atss_R18_shapes import lr_multiplier, model, optimizer, train

model.num_classes = len(BCCD_CLASS_NAMES)
train.max_iter = 180  # the lr_multiplier's milestones are fractions of it (75%, 90%)
train.eval_period = 0  # evaluate once, at the end (also when max_iter is overridden)
train.log_period = 10  # 18 points on the report's loss curve
train.output_dir = "./output/quickstart_atss_bccd"
