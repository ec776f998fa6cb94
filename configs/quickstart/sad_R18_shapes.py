"""Semi-Anchored Detector R-18-FPN (64 channels) on the embedded shapes dataset.

``configs/COCO-Detection/sad_R_50_FPN_1x.py`` shrunk by ``configs/common/quickstart.py`` (256 px,
batch 8, 300 iterations, from scratch), anchors halved as the RetinaNet/ATSS quickstarts (base
size 2 x stride: shapes are 5-230 px in 256 px images), still 5 scales x 5 ratios.
"""

# isort: skip_file  (import order = the loaded config's top-level key order: keep it as written)
from ..common.quickstart import load_quickstart

model, dataloader, optimizer, lr_multiplier, train = load_quickstart(
    "sad_R_50_FPN_1x.py", output_dir="./output/quickstart_sad"
)
model.anchor_generator.sizes = [
    [2 * s * 2 ** (i / 5) for i in range(5)] for s in (8, 16, 32, 64, 128)
]
