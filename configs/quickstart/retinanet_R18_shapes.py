"""RetinaNet R-18-FPN (64 channels) on the embedded shapes dataset: the CPU quickstart baseline.

``configs/COCO-Detection/retinanet_R_50_FPN_1x.py`` shrunk by ``configs/common/quickstart.py``:
256 px, batch 8, 300 iterations, from scratch. Anchors are halved (16-256 px instead of 32-512)
because shapes are 5-230 px in 256 px images where COCO objects are 8-800 px in 800 px images.
The head's towers get GroupNorm (``retinanet_head_norm`` in ``configs/common/quickstart.py``): the
norm-free head of the COCO config does not train from scratch in 300 CPU iterations.
"""

# isort: skip_file  (import order = the loaded config's top-level key order: keep it as written)
from ..common.quickstart import load_quickstart, retinanet_head_norm

model, dataloader, optimizer, lr_multiplier, train = load_quickstart(
    "retinanet_R_50_FPN_1x.py", output_dir="./output/quickstart_retinanet"
)
model.head.norm = retinanet_head_norm  # GN: see configs/common/quickstart.py
model.anchor_generator.sizes = [
    [x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)] for x in [16, 32, 64, 128, 256]
]
