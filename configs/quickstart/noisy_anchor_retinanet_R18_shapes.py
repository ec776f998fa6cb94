"""Noisy-Anchor RetinaNet R-18-FPN (64 channels) on the embedded shapes dataset.

``configs/COCO-Detection/noisy_anchor_retinanet_R_50_FPN_1x.py`` shrunk exactly as
``retinanet_R18_shapes.py`` shrinks the RetinaNet baseline (``configs/common/quickstart.py``:
256 px, batch 8, 300 iterations, from scratch; anchors halved to 16-256 px; GroupNorm in the
head towers), so the two differ only by the label assignment (and its losses).
"""

# isort: skip_file  (import order = the loaded config's top-level key order: keep it as written)
from ..common.quickstart import load_quickstart, retinanet_head_norm

model, dataloader, optimizer, lr_multiplier, train = load_quickstart(
    "noisy_anchor_retinanet_R_50_FPN_1x.py", output_dir="./output/quickstart_noisy_anchor_retinanet"
)
model.head.norm = retinanet_head_norm  # GN: see configs/common/quickstart.py
model.anchor_generator.sizes = [
    [x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)] for x in [16, 32, 64, 128, 256]
]
