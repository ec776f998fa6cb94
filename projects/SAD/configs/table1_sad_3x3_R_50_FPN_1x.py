"""SAD Table 1 row (#s, #a) = (3, 3): A = 9 anchors per location (base 4 x stride, scales
2^(i/3), ratios [0.5, 1.0, 2.0]; choice S1)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.anchor_generator.sizes = [
    [4 * s * 2 ** (i / 3) for i in range(3)] for s in (8, 16, 32, 64, 128)
]
model.anchor_generator.aspect_ratios = [[0.5, 1.0, 2.0]]
model.head.num_anchors = 9
