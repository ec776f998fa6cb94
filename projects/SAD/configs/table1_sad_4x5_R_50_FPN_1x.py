"""SAD Table 1 row (#s, #a) = (4, 5): A = 20 anchors per location (base 4 x stride, scales
2^(i/4), ratios [1 / 3, 1 / 2, 1.0, 2.0, 3.0]; choice S1)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.anchor_generator.sizes = [
    [4 * s * 2 ** (i / 4) for i in range(4)] for s in (8, 16, 32, 64, 128)
]
model.anchor_generator.aspect_ratios = [[1 / 3, 1 / 2, 1.0, 2.0, 3.0]]
model.head.num_anchors = 20
