"""PADet's recipe (Sec. 3.3 "Training", Sec. 4 "Implementation Details"): batch 32, SGD momentum
0.9, weight decay 5e-4, lr 2e-3 with a linear warm-up from 1e-6 over the first 5 epochs, x0.1 at
100 and 140 epochs, 160 epochs. COCO trainval35k = 117,266 images -> 3,665 iterations per epoch
at batch 32."""

from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

IMAGES, BATCH = 117_266, 32
ITERS_PER_EPOCH = IMAGES / BATCH
MAX_ITER = round(160 * ITERS_PER_EPOCH)
BASE_LR = 2e-3

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01],
        milestones=[round(100 * ITERS_PER_EPOCH), round(140 * ITERS_PER_EPOCH), MAX_ITER],
    ),
    warmup_length=5 / 160,
    warmup_method="linear",
    warmup_factor=1e-6 / BASE_LR,
)
