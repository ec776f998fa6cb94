"""Noisy-Anchor RetinaNet R-18-FPN (64 channels) on the embedded shapes dataset.

``configs/COCO-Detection/noisy_anchor_retinanet_R_50_FPN_1x.py`` shrunk exactly as
``retinanet_R18_shapes.py`` shrinks the RetinaNet baseline (``configs/common/quickstart.py``:
256 px, batch 8, 300 iterations, from scratch; anchors halved to 16-256 px; GroupNorm in the
head towers), so the two differ only by the label assignment (and its losses).
"""

# isort: skip_file  (import order = the loaded config's top-level key order: keep it as written)
from detectron2.config import LazyConfig

from ..common.quickstart import (
    lr,
    retinanet_head_norm,
    shapes_dataloader,
    shrink_to_quickstart,
    train_overrides,
)
from ..common.quickstart import lr_multiplier as quickstart_lr_multiplier

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../COCO-Detection/noisy_anchor_retinanet_R_50_FPN_1x.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

shrink_to_quickstart(model)  # R-18 from scratch, 64-channel FPN/head, 4 classes
model.head.norm = retinanet_head_norm  # GN: see configs/common/quickstart.py
model.anchor_generator.sizes = [
    [x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)] for x in [16, 32, 64, 128, 256]
]
dataloader = shapes_dataloader
optimizer.lr = lr
lr_multiplier = quickstart_lr_multiplier
train.update(train_overrides)
train.output_dir = "./output/quickstart_noisy_anchor_retinanet"
