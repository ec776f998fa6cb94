"""ATSS (anchor-based) R-18-FPN (64 channels) on the embedded shapes dataset: the README's main job.

``configs/COCO-Detection/atss_R_50_FPN_1x.py`` shrunk by ``configs/common/quickstart.py``
(256 px, batch 8, 300 iterations, from scratch), with the same anchor halving as the RetinaNet
quickstart baseline (anchor = 4 x stride instead of 8 x stride: shapes are 5-230 px in 256 px
images), so the two differ only by what the ATSS paper changes.
"""

# isort: skip_file  (import order = the loaded config's top-level key order: keep it as written)
from ..common.quickstart import load_quickstart

model, dataloader, optimizer, lr_multiplier, train = load_quickstart(
    "atss_R_50_FPN_1x.py", output_dir="./output/quickstart_atss"
)
model.anchor_generator.sizes = [[32], [64], [128], [256], [512]]
