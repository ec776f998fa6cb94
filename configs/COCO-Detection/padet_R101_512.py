"""PADet, ResNet-101 encoder, 512 x 512 (test-dev Table 6: 40.0 AP at 28.6 FPS on a 1080 Ti): the
VGG-16 512 config (7 levels 64 ... 1, SAD_PADET.md P2) with the ResNet-101 encoder of
``padet_R101_384.py`` and one more extra block (C3-C5 at 64, 32, 16; extras 8, 4, 2; D7 = 1)."""

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig

from semianchor.modeling.backbone.encoder_decoder import ResNetEncoder

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "padet_VGG16_512.py", ("model", "dataloader", "optimizer", "lr_multiplier", "train")
)

model.backbone.encoder = L(ResNetEncoder)(
    depth=101, num_extra=3, norm="FrozenBN", stride_in_1x1=True, freeze_at=2
)
model.pixel_std = [1.0, 1.0, 1.0]  # MSRA's weights expect mean-subtracted 0-255 BGR
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/padet_R101_512"
