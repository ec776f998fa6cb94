"""PADet, ResNet-101 encoder, 512 x 512 (test-dev Table 6: 40.0 AP at 28.6 FPS on a 1080 Ti): the
VGG-16 512 config (7 levels 64 ... 1, choice P2) with the ResNet-101 encoder of
``padet_R101_384.py`` and one more extra block (C3-C5 at 64, 32, 16; extras 8, 4, 2; D7 = 1)."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "padet_VGG16_512.py", ("model", "dataloader", "optimizer", "lr_multiplier", "train")
)
_r101_model, _r101_train = LazyConfig.load_rel("padet_R101_384.py", ("model", "train"))

model.backbone.encoder = _r101_model.backbone.encoder
model.backbone.encoder.num_extra = 3
model.pixel_std = _r101_model.pixel_std
train.init_checkpoint = _r101_train.init_checkpoint
train.init_checkpoint_expected = _r101_train.init_checkpoint_expected
train.output_dir = "./output/padet_R101_512"
