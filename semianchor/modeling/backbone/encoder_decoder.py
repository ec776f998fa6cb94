"""PADet's encoder-decoder backbone (Tang et al., "PosNeg-Balanced Anchors with Aligned Features for
Single-Shot Object Detection", Sec. 3).

The paper text that defines the encoder layers E1..E5 and the skip block is missing from the
available copy; what is inferred from SSD/DSSD conventions is marked "inferred" and listed
with its reason in projects/PADet/DESIGN.md (choices P1, P2). Shape legend: N images, C
channels, D_i levels.

* Encoders: :class:`VGG16Encoder` (SSD's VGG-16: E1 = conv4_3 at stride 8, E2 = fc7 at stride
  16 after SSD's pool5 3x3/s1 and dilated fc6, then extra blocks [1x1, 3x3 stride 2]; inferred),
  or :class:`ResNetEncoder` (E1..E3 = Detectron2's C3..C5, then extra blocks; inferred). A
  ``width`` multiplier (and the R-18 encoder) keep CPU quickstarts in minutes.
* Decoder (paper): D_last = CBR3(lateral(E_last)); D_i = CBR3(CBR1(bilinear_up(D_{i+1})) +
  lateral(E_i)) with 256 channels; "an extra D6 ... by directly down-sampling the D5": a 3x3
  max-pool with stride 2 (inferred, P1). Lateral ("skip-connection") block: CBR3 (inferred, P1).
  CBRx-y = conv x*x with y outputs + BN + ReLU.
* Layouts: 384 px -> 48, 24, 12, 6, 3, 1 (strides 8 ... 384; 18,400 SSD anchors); 512 px needs
  one more extra block (64, 32, 16, 8, 4, 2, 1; P2): ``num_extra`` blocks after the trunk.
"""

from typing import Dict, List

import torch.nn.functional as F
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, Backbone, BasicStem, ResNet

__all__ = ["VGG16Encoder", "ResNetEncoder", "EncoderDecoder", "cbr"]


def cbr(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, norm: bool = True):
    """CBRk-c: conv k x k (padding k // 2) + BN + ReLU (MSRA init, as the paper's new layers)."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=not norm
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers = [conv] + ([nn.BatchNorm2d(out_channels)] if norm else []) + [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _extra_blocks(in_channels: int, num: int, width: float) -> nn.ModuleList:
    """SSD's extra layers: [1x1 c/2, 3x3 c stride 2] (256 -> 512 for VGG); inferred (P1)."""
    blocks, c_in = nn.ModuleList(), in_channels
    mid, out = max(int(256 * width), 8), max(int(512 * width), 8)
    for _ in range(num):
        blocks.append(nn.Sequential(cbr(c_in, mid, 1), cbr(mid, out, 3, stride=2)))
        c_in = out
    return blocks


class VGG16Encoder(nn.Module):
    """SSD's VGG-16 (conv1_1 .. conv5_3 with max-pools; pool5 3x3/s1; fc6 3x3 dilation 6; fc7 1x1)
    plus ``num_extra`` extra blocks. Plain ReLU convs as VGG (no BN: ImageNet VGG has none).
    Returns [E1 (conv4_3, stride 8), E2 (fc7, 16), E3.. (32, 64, ...)]."""

    CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512]  # up to conv4_3

    def __init__(self, *, width: float = 1.0, num_extra: int = 3):
        super().__init__()
        layers, c_in = [], 3
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                c = max(int(v * width), 8)
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = c
        self.to_conv4_3 = nn.Sequential(*layers)
        c5, fc = max(int(512 * width), 8), max(int(1024 * width), 8)
        conv5 = []
        for _ in range(3):  # conv5_1 .. conv5_3
            conv5 += [nn.Conv2d(c_in, c5, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = c5
        self.to_fc7 = nn.Sequential(
            nn.MaxPool2d(2, 2, ceil_mode=True),
            *conv5,
            nn.MaxPool2d(3, 1, 1),  # pool5: 3x3 stride 1 (SSD)
            nn.Conv2d(c5, fc, 3, padding=6, dilation=6),  # fc6 (dilated)
            nn.ReLU(inplace=True),
            nn.Conv2d(fc, fc, 1),  # fc7
            nn.ReLU(inplace=True),
        )
        conv4_channels = max(int(512 * width), 8)
        self.extras = _extra_blocks(fc, num_extra, width)
        self.out_channels = [conv4_channels, fc] + [max(int(512 * width), 8)] * num_extra
        self.strides = [8, 16] + [16 * 2 ** (i + 1) for i in range(num_extra)]

    def forward(self, x) -> List:
        e1 = self.to_conv4_3(x)
        outs = [e1, self.to_fc7(e1)]
        for block in self.extras:
            outs.append(block(outs[-1]))
        return outs


class ResNetEncoder(nn.Module):
    """Detectron2's ResNet (``depth`` 18..152) C3, C4, C5 plus ``num_extra`` extra blocks
    (inferred, P1): strides 8, 16, 32, 64, ...

    Args:
        depth: ResNet depth. num_extra: extra [1x1, 3x3 stride 2] blocks after C5 (2 at 384 px,
            3 at 512). width: channel multiplier of the extra blocks only.
        norm: the ResNet's norm ("BN": trained from scratch, the default; "FrozenBN" for
            ImageNet weights whose BN is folded into an affine, as MSRA's).
        stride_in_1x1: put the stride of a bottleneck's first block in its 1x1 conv (MSRA's
            Caffe ResNets, ``detectron2://ImageNetPretrained/MSRA/R-*.pkl``) rather than in the
            3x3 (torchvision's); ignored for depth < 50 (basic blocks).
        freeze_at: Detectron2's ``freeze_at`` (0: nothing frozen; 2: stem and res2).

    Detectron2's checkpointer loads MSRA's ``R-101.pkl`` into ``resnet.*`` by name matching
    (tests/modeling/test_padet.py), whatever prefix this encoder has in the model.
    """

    def __init__(
        self,
        *,
        depth: int = 101,
        num_extra: int = 2,
        width: float = 1.0,
        freeze_at: int = 0,
        norm: str = "BN",
        stride_in_1x1: bool = False,
    ):
        super().__init__()
        block_kwargs = dict(stride_in_1x1=stride_in_1x1) if depth >= 50 else {}
        stages = ResNet.make_default_stages(depth=depth, norm=norm, **block_kwargs)
        stem = BasicStem(in_channels=3, out_channels=64, norm=norm)
        self.resnet = ResNet(
            stem, stages, out_features=["res3", "res4", "res5"], freeze_at=freeze_at
        )
        shapes = self.resnet.output_shape()
        c5 = shapes["res5"].channels
        self.extras = _extra_blocks(c5, num_extra, width)
        self.out_channels = [shapes[k].channels for k in ("res3", "res4", "res5")]
        self.out_channels += [max(int(512 * width), 8)] * num_extra
        self.strides = [8, 16, 32] + [32 * 2 ** (i + 1) for i in range(num_extra)]

    def forward(self, x) -> List:
        feats = self.resnet(x)
        outs = [feats["res3"], feats["res4"], feats["res5"]]
        for block in self.extras:
            outs.append(block(outs[-1]))
        return outs


class EncoderDecoder(Backbone):
    """U-Net-like decoder over an encoder's E1..E_L (module docstring), outputs ``d1`` ..
    ``d{L+1}`` with ``channels`` each (D_{L+1} = max-pool of D_L)."""

    def __init__(self, *, encoder: nn.Module, channels: int = 256):
        super().__init__()
        self.encoder = encoder
        self.laterals = nn.ModuleList(cbr(c, channels, 3) for c in encoder.out_channels)
        self.top_down = nn.ModuleList(cbr(channels, channels, 1) for _ in encoder.out_channels[:-1])
        self.smooth = nn.ModuleList(cbr(channels, channels, 3) for _ in encoder.out_channels)
        self.extra_down = nn.MaxPool2d(3, 2)  # D_{L+1}: 3 -> 1 at 384, 2 -> 1 at 512 (P1)
        self.channels = channels
        strides = list(encoder.strides)
        self._strides = strides + [strides[-1] * 2]
        self._out_features = [f"d{i + 1}" for i in range(len(self._strides))]

    def forward(self, x) -> Dict:
        enc = self.encoder(x)
        decoded = [None] * len(enc)
        decoded[-1] = self.smooth[-1](self.laterals[-1](enc[-1]))
        for i in range(len(enc) - 2, -1, -1):
            up = F.interpolate(
                decoded[i + 1], size=enc[i].shape[-2:], mode="bilinear", align_corners=False
            )
            decoded[i] = self.smooth[i](self.top_down[i](up) + self.laterals[i](enc[i]))
        last = decoded[-1]
        # a 1x1 or 2x2 map cannot be pooled by a 3x3 window: pad with -inf (max-pool identity)
        pad_h, pad_w = max(0, 3 - last.shape[-2]), max(0, 3 - last.shape[-1])
        if pad_h or pad_w:
            last = F.pad(last, (0, pad_w, 0, pad_h), value=float("-inf"))
        decoded.append(self.extra_down(last))
        return dict(zip(self._out_features, decoded))

    def output_shape(self):
        return {
            name: ShapeSpec(channels=self.channels, stride=s)
            for name, s in zip(self._out_features, self._strides)
        }


@BACKBONE_REGISTRY.register()
def build_padet_backbone(cfg, input_shape: ShapeSpec):
    """yacs: ``MODEL.SEMIANCHOR.PADET.ENCODER`` ("vgg16" | "resnet"), ``.ENCODER_WIDTH``,
    ``.NUM_EXTRA``, ``.DECODER_CHANNELS``; a ResNet encoder reads Detectron2's
    ``MODEL.RESNETS.DEPTH``, ``.NORM``, ``.STRIDE_IN_1X1`` and ``MODEL.BACKBONE.FREEZE_AT``."""
    p = cfg.MODEL.SEMIANCHOR.PADET
    if p.ENCODER == "vgg16":
        encoder = VGG16Encoder(width=p.ENCODER_WIDTH, num_extra=p.NUM_EXTRA)
    elif p.ENCODER == "resnet":
        encoder = ResNetEncoder(
            depth=cfg.MODEL.RESNETS.DEPTH,
            num_extra=p.NUM_EXTRA,
            width=p.ENCODER_WIDTH,
            freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
            norm=cfg.MODEL.RESNETS.NORM,
            stride_in_1x1=cfg.MODEL.RESNETS.STRIDE_IN_1X1,
        )
    else:
        raise ValueError(
            f"MODEL.SEMIANCHOR.PADET.ENCODER must be 'vgg16' or 'resnet', got {p.ENCODER!r}"
        )
    return EncoderDecoder(encoder=encoder, channels=p.DECODER_CHANNELS)
