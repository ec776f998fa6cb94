"""COCO "Nx" learning-rate multipliers: Detectron2's ``common/coco_schedule.py``. 1x = 90k
iterations at batch 16 (~12 COCO epochs), x0.1 at the last 30k and 10k iterations for <= 2x
("Rethinking ImageNet Pre-training", Sec. 4), 1k linear warmup.

The multipliers are scale-invariant (milestones are fractions of ``train.max_iter``), so a config
that changes ``train.max_iter`` keeps the shape of its schedule.
"""

from detectron2.model_zoo import get_config

_schedules = get_config("common/coco_schedule.py")
lr_multiplier_1x = _schedules.lr_multiplier_1x
lr_multiplier_2x = _schedules.lr_multiplier_2x
lr_multiplier_3x = _schedules.lr_multiplier_3x
