"""DLA (anchor-free, the paper's default) R-50-FPN, COCO 1x: ATSS's recipe unchanged (90k
iterations, batch 16, lr 0.01, 800 px), k = 10, alpha0 = 0.9, gamma = 1, loss weights a = c = 1,
b = 2. Paper (COCO val2017, Table 2 "dy, 0.9"): 40.3 AP (its ATSS baseline ~39.3-39.4).

Warm-up: "The 1x and 2x training schedules follow the default settings in MMDetection" (Sec.
4.1): MMDetection's 1x warms up linearly over 500 iterations from 0.001 of the lr (batch 16, as
the paper's 4 GPUs x 4 images), not Detectron2's 1000 iterations. ATSS's paper states none."""

from ..common.data.constants import dataset_sizes
from ..common.models.dla import model
from .atss_R_50_FPN_1x import dataloader, lr_multiplier, optimizer, train

model.backbone.bottom_up.freeze_at = 2
lr_multiplier.warmup_length = 500 / train.max_iter  # MMDetection schedule_1x: 500 iterations
lr_multiplier.warmup_factor = 0.001  # linear from 0.001 x lr
# alpha's schedule (Eq. 2) from this config's data and length (the training tool re-derives it)
model.iters_per_epoch = dataset_sizes["coco_2017_train"] / dataloader.train.total_batch_size
model.max_iter = train.max_iter
train.output_dir = "./output/dla_R_50_FPN_1x"
