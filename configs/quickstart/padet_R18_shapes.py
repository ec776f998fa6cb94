"""PADet with an R-18 encoder (from scratch), 64-channel decoder, on the embedded shapes dataset
(256 px, batch 8, the quickstart schedule of ``configs/common/quickstart.py``): the CPU-sized
twin of ``configs/COCO-Detection/padet_VGG16_384.py`` (a full VGG-16 at 384 px is ~45 GFLOPs per
image). Levels at 256 px: 32, 16, 8, 4, 2, 1 (strides 8 ... 256); SSD priors scaled to 256."""

# isort: skip_file  (import order = the loaded config's top-level key order: keep it as written)
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig
from detectron2.layers import ShapeSpec

from semianchor.modeling.anchors import ssd_sizes
from semianchor.modeling.backbone.encoder_decoder import ResNetEncoder

from ..common.quickstart import lr, num_classes, shapes_dataloader, train_overrides
from ..common.quickstart import lr_multiplier as quickstart_lr_multiplier

model, optimizer, train = LazyConfig.load_rel(
    "../COCO-Detection/padet_VGG16_384.py", ("model", "optimizer", "train")
)

CHANNELS = 64
model.backbone.encoder = L(ResNetEncoder)(depth=18, num_extra=2, width=0.25)
model.backbone.channels = CHANNELS
model.head.input_shape = [ShapeSpec(channels=CHANNELS)] * 6
mins, maxs = ssd_sizes(256, [0.07, 0.15, 0.33, 0.51, 0.69, 0.87])
model.anchor_generator.min_sizes = mins
model.anchor_generator.max_sizes = maxs
model.anchor_generator.strides = [8, 16, 32, 64, 128, 256]
model.num_classes = num_classes
model.test_input_size = None  # the quickstart data keep the aspect ratio (ResizeShortestEdge)
dataloader = shapes_dataloader
optimizer.lr = lr
optimizer.weight_decay = 1e-4
lr_multiplier = quickstart_lr_multiplier
train.update(train_overrides)
train.init_checkpoint_expected = None  # R-18 from scratch on purpose
train.output_dir = "./output/quickstart_padet"
