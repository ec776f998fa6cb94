"""SAD Table 1 row (#s, #a) = (1, 1): A = 1 anchors per location (base 4 x stride, scales
2^(i/1), ratios [1.0]; choice S1)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.anchor_generator.sizes = [
    [4 * s * 2 ** (i / 1) for i in range(1)] for s in (8, 16, 32, 64, 128)
]
model.anchor_generator.aspect_ratios = [[1.0]]
model.head.num_anchors = 1
