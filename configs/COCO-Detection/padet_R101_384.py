"""PADet, ResNet-101 encoder, 384 x 384 (test-dev Table 6: 36.9 AP at 40.0 FPS on a 1080 Ti): the
VGG-16 384 recipe (Sec. 3.3 and 4: 160 epochs at batch 32, lr 2e-3 with a 5-epoch warm-up from
1e-6, x0.1 at 100 / 140 epochs, weight decay 5e-4, SSD augmentation, SSD priors, theta 0.01,
soft-NMS) with the encoder swapped.

Encoder (inferred, projects/PADet/DESIGN.md): E1-E3 = C3, C4, C5 of ResNet-101 (48, 24, 12 at
384) and two extra [1x1, 3x3 stride 2] blocks (6, 3); D6 = max-pool of D5 (1): the VGG layout,
18,400 anchors. ImageNet weights: Detectron2's MSRA ResNet-101 (the Caffe model: stride in the
1x1 conv, BN folded into an affine -> FrozenBN, BGR input with mean subtraction only); stem and
res2 frozen (Detectron2's convention for these weights; the paper says nothing about it)."""

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig

from semianchor.modeling.backbone.encoder_decoder import ResNetEncoder

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "padet_VGG16_384.py", ("model", "dataloader", "optimizer", "lr_multiplier", "train")
)

model.backbone.encoder = L(ResNetEncoder)(
    depth=101, num_extra=2, norm="FrozenBN", stride_in_1x1=True, freeze_at=2
)
model.pixel_std = [1.0, 1.0, 1.0]  # MSRA's weights expect mean-subtracted 0-255 BGR
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.init_checkpoint_expected = (
    "ImageNet ResNet-101: detectron2://ImageNetPretrained/MSRA/R-101.pkl, or torchvision's "
    "converted by tools/convert_imagenet_weights.py resnet101"
)
train.output_dir = "./output/padet_R101_384"
