"""PADet, VGG-16, 512 x 512 (test-dev Table 6: 37.6 AP): the 384 recipe with the 7-level layout
64, 32, 16, 8, 4, 2, 1 (choice P2, projects/PADet/DESIGN.md: one more extra encoder block; 6
anchors on D1-D4, 4 on D5-D7; FAM on D1-D5) and SSD512-like prior sizes."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig
from detectron2.layers import ShapeSpec

from semianchor.modeling.anchors import ssd_sizes

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "padet_VGG16_384.py", ("model", "dataloader", "optimizer", "lr_multiplier", "train")
)

mins, maxs = ssd_sizes(512, [0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9])  # SSD512-COCO-like (P3)
model.backbone.encoder.num_extra = 4
model.head.input_shape = [ShapeSpec(channels=256)] * 7
model.head.num_anchors = [6, 6, 6, 6, 4, 4, 4]
model.head.fam_levels = 5
model.head_in_features = [f"d{i}" for i in range(1, 8)]
model.anchor_generator.min_sizes = mins
model.anchor_generator.max_sizes = maxs
model.anchor_generator.aspect_ratios = [[1.0, 2.0, 3.0, 0.5, 1 / 3]] * 4 + [[1.0, 2.0, 0.5]] * 3
model.anchor_generator.strides = [8, 16, 32, 64, 128, 256, 512]
dataloader.train.mapper.augmentations[3] = L(T.Resize)(shape=(512, 512))  # after the SSD crop
dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(512, 512))]
model.test_input_size = (512, 512)
