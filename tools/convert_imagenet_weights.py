#!/usr/bin/env python
"""Convert torchvision's ImageNet VGG-16 or ResNet-101 state dict to PADet's encoder names.

The PADet paper initialises its encoder from ImageNet (Sec. 3.3, "Training"). Detectron2's
model zoo has no VGG-16, and its ResNet-101 is MSRA's Caffe model (what
``configs/COCO-Detection/padet_R101_*.py`` load by default). This tool takes torchvision's
weights instead; download them yourself (nothing is fetched here), e.g. in Python::

    torch.save(torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict(), "vgg16.pth")
    torch.save(torchvision.models.resnet101(weights="IMAGENET1K_V1").state_dict(), "r101.pth")

then::

    python tools/convert_imagenet_weights.py vgg16 vgg16.pth vgg16_imagenet_padet.pth
    python tools/convert_imagenet_weights.py resnet101 r101.pth r101_torchvision_padet.pth

and train with ``train.init_checkpoint=<output>`` (plus the overrides the tool prints). The
output is ``{"model": {name: tensor}}`` with names under ``backbone.encoder``; the decoder and the
heads are not in it (Detectron2's checkpointer lists them as not found, as expected).

VGG-16 (``VGG16Encoder``, the configs ``padet_VGG16_*.py``): conv1_1 .. conv5_3 copied; SSD's
reduced fc6 / fc7 (Liu et al. 2016, Sec. 3): every 4th output channel of fc6 and fc7 (and of
fc7's inputs), fc6's 7x7 taps subsampled at stride 3 into the dilation-6 3x3 conv. The configs
feed BGR normalised with torchvision's mean and std x 255, so conv1_1's input channels are
reversed and the normalised input equals torchvision's: no override needed.

ResNet-101 (``ResNetEncoder``, the configs ``padet_R101_*.py``): torchvision's ``conv1`` /
``bn1`` / ``layerN.i.*`` -> Detectron2's ``stem.conv1`` / ``resN+1.i.*`` (``downsample`` ->
``shortcut``; BN statistics into FrozenBN). torchvision puts a bottleneck's stride in its 3x3
conv: train with ``model.backbone.encoder.stride_in_1x1=False``. The R-101 configs feed
mean-subtracted 0-255 BGR (``pixel_std`` 1, MSRA's convention), so conv1's input channels are
reversed and divided by torchvision's std x 255: the stem sees what torchvision's would.
"""

import argparse
import re
import sys
from typing import Dict, List, Tuple

import torch

ENCODER = "backbone.encoder"
TORCHVISION_STD_RGB = (0.229, 0.224, 0.225)
VGG_TO_CONV4_3 = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)  # conv1_1 .. conv4_3 (same indices)
VGG_CONV5 = ((24, 1), (26, 3), (28, 5))  # torchvision features.i -> our to_fc7.j
FC6, FC7 = 8, 10  # our to_fc7 indices of fc6 (3x3, dilation 6) and fc7 (1x1)

OVERRIDES = {
    "vgg16": [],
    "resnet101": ["model.backbone.encoder.stride_in_1x1=False"],
}


def _take(state: Dict[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in state:
        raise KeyError(f"{name!r} missing from the input state dict: is it torchvision's model?")
    return state[name]


def convert_vgg16(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """torchvision ``vgg16`` state dict -> ``VGG16Encoder`` names (module doc)."""
    out = {}
    for i in VGG_TO_CONV4_3:
        for p in ("weight", "bias"):
            out[f"{ENCODER}.to_conv4_3.{i}.{p}"] = _take(state, f"features.{i}.{p}").clone()
    for src, dst in VGG_CONV5:
        for p in ("weight", "bias"):
            out[f"{ENCODER}.to_fc7.{dst}.{p}"] = _take(state, f"features.{src}.{p}").clone()
    fc6 = _take(state, "classifier.0.weight")
    if fc6.shape != (4096, 512 * 7 * 7):
        raise ValueError(
            f"classifier.0.weight has shape {tuple(fc6.shape)}, VGG-16's is (4096, 25088)"
        )
    fc6 = fc6.view(4096, 512, 7, 7)
    out[f"{ENCODER}.to_fc7.{FC6}.weight"] = fc6[::4, :, ::3, ::3].clone()
    out[f"{ENCODER}.to_fc7.{FC6}.bias"] = _take(state, "classifier.0.bias")[::4].clone()
    fc7 = _take(state, "classifier.3.weight")
    out[f"{ENCODER}.to_fc7.{FC7}.weight"] = fc7[::4, ::4, None, None].clone()
    out[f"{ENCODER}.to_fc7.{FC7}.bias"] = _take(state, "classifier.3.bias")[::4].clone()
    first = f"{ENCODER}.to_conv4_3.0.weight"
    out[first] = out[first].flip(1).contiguous()  # RGB -> BGR input channels
    return out


_BN = {
    "weight": "weight",
    "bias": "bias",
    "running_mean": "running_mean",
    "running_var": "running_var",
}


def _resnet_name(name: str) -> str:
    """A torchvision ResNet parameter name -> Detectron2's ResNet name (below ``resnet.``)."""
    m = re.fullmatch(r"conv1\.weight", name)
    if m:
        return "stem.conv1.weight"
    m = re.fullmatch(r"bn1\.(\w+)", name)
    if m:
        return f"stem.conv1.norm.{_BN[m.group(1)]}"
    m = re.fullmatch(r"layer(\d)\.(\d+)\.(conv|bn)(\d)\.(\w+)", name)
    if m:
        stage, block, kind, idx, p = m.groups()
        prefix = f"res{int(stage) + 1}.{block}.conv{idx}"
        return f"{prefix}.weight" if kind == "conv" else f"{prefix}.norm.{_BN[p]}"
    m = re.fullmatch(r"layer(\d)\.(\d+)\.downsample\.([01])\.(\w+)", name)
    if m:
        stage, block, which, p = m.groups()
        prefix = f"res{int(stage) + 1}.{block}.shortcut"
        return f"{prefix}.weight" if which == "0" else f"{prefix}.norm.{_BN[p]}"
    raise KeyError(f"unexpected torchvision ResNet parameter {name!r}")


def convert_resnet(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """torchvision ``resnet*`` state dict -> ``ResNetEncoder`` names (module doc); the classifier
    (``fc.*``) and BN's ``num_batches_tracked`` are dropped (the encoder has neither)."""
    out = {}
    for name, tensor in state.items():
        if name.startswith("fc.") or name.endswith("num_batches_tracked"):
            continue
        out[f"{ENCODER}.resnet.{_resnet_name(name)}"] = tensor.clone()
    stem = f"{ENCODER}.resnet.stem.conv1.weight"
    if stem not in out:
        raise KeyError("conv1.weight missing from the input state dict: is it torchvision's model?")
    std = torch.tensor(TORCHVISION_STD_RGB, dtype=out[stem].dtype) * 255.0
    out[stem] = (out[stem] / std[None, :, None, None]).flip(1).contiguous()
    return out


CONVERTERS = {"vgg16": convert_vgg16, "resnet101": convert_resnet}


def convert(arch: str, state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """(converted state dict, the config overrides to train with)."""
    if arch not in CONVERTERS:
        raise ValueError(f"arch must be one of {sorted(CONVERTERS)}, got {arch!r}")
    return CONVERTERS[arch](state), list(OVERRIDES[arch])


def load_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """A torchvision ``state_dict`` saved with ``torch.save`` (a ``{"state_dict": ...}`` or
    ``{"model": ...}`` wrapper is unwrapped)."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return obj


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("arch", choices=sorted(CONVERTERS))
    p.add_argument("input", help="torchvision state dict (torch.save of model.state_dict())")
    p.add_argument("output", help="converted checkpoint for train.init_checkpoint")
    args = p.parse_args(argv)
    converted, overrides = convert(args.arch, load_state_dict(args.input))
    torch.save({"model": converted}, args.output)
    print(f"wrote {args.output}: {len(converted)} encoder tensors")
    print("train with: train.init_checkpoint=" + args.output + "".join(f" {o}" for o in overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
