"""Deformable convolution (DCNv1, Dai et al. 2017) with the semantics of
``torchvision.ops.deform_conv2d``: for output location p and kernel tap k (k = i * kw + j),

    y(p) = bias + sum_k sum_c  w[:, c, i, j] * x_c(p * stride - padding + k_ij * dilation + dp_k)

where dp_k = (offset[2k], offset[2k + 1]) = (dy, dx) in input pixels and x_c(.) is bilinear
interpolation with zeros outside the image (a sample at y <= -1 or y >= H is 0; nearer the border
the corners that fall outside contribute 0).

Implementations (``impl``):

- ``"sampled"``: every tap's sample positions are laid out as one sampling grid and read with
  ``torch.nn.functional.grid_sample`` (bilinear, zero padding, ``align_corners=False``), which gives
  the (N, C * kh * kw, Ho * Wo) column matrix directly; a batched matmul with the weight finishes
  the convolution. Forward and backward are ATen kernels that use the intra-op threads on CPU,
  and autograd gives the gradients of the input, the offsets, the weight and the bias (measured:
  ``benchmarks/bench_train_step.py``, PADet's step with this FAM is 1.09x the step without FAM at
  2 threads, 1.66x with torchvision's kernel).
- ``"torchvision"``: ``torchvision.ops.deform_conv2d``. Its CPU backward runs on one thread.
- ``"auto"`` (default): "sampled" on CPU, "torchvision" on CUDA (torchvision's CUDA kernels are the
  well-trodden path there).

The two agree to float rounding (the grid's normalisation to [-1, 1] and back rounds the sample
positions in the last bits); :func:`deform_conv2d_reference` (explicit four-corner gathers, no
coordinate normalisation) is the pure-PyTorch specification the tests hold both against.

Scope: one offset group, one weight group, no modulation mask (what the feature alignment of PADet
uses); anything else is a ValueError rather than a silently different result.
"""

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DEFORM_CONV_IMPLS", "deform_conv2d", "deform_conv2d_reference"]

DEFORM_CONV_IMPLS = ("auto", "sampled", "torchvision")

IntPair = Union[int, Tuple[int, int]]


def _pair(value: IntPair, name: str) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"deform_conv2d: {name} must be an int or a pair, got {value!r}")
    return pair


def _check(input, offset, weight, bias, stride, padding, dilation):
    """Shapes, dtypes and devices of a DCNv1 call; returns the (stride, padding, dilation) pairs
    and (kh, kw, Ho, Wo)."""
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    dilation = _pair(dilation, "dilation")
    if input.dim() != 4 or weight.dim() != 4 or offset.dim() != 4:
        raise ValueError(
            "deform_conv2d: input (N, C, H, W), offset (N, 2 kh kw, Ho, Wo) and weight "
            f"(O, C, kh, kw) must be 4-D, got {tuple(input.shape)}, {tuple(offset.shape)}, "
            f"{tuple(weight.shape)}"
        )
    N, C, H, W = input.shape
    O, Cw, kh, kw = weight.shape
    if Cw != C:
        raise ValueError(
            f"deform_conv2d: weight has {Cw} input channels, input has {C} (groups are not "
            "supported)"
        )
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(
            f"deform_conv2d: stride {stride} and dilation {dilation} must be >= 1, padding "
            f"{padding} >= 0"
        )
    Ho = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"deform_conv2d: empty output {Ho}x{Wo} for input {H}x{W}")
    if tuple(offset.shape) != (N, 2 * kh * kw, Ho, Wo):
        raise ValueError(
            f"deform_conv2d: offset must be (N, 2 kh kw, Ho, Wo) = {(N, 2 * kh * kw, Ho, Wo)} "
            f"(one offset group), got {tuple(offset.shape)}"
        )
    tensors = [input, offset, weight] + ([bias] if bias is not None else [])
    if len({t.dtype for t in tensors}) != 1 or len({t.device for t in tensors}) != 1:
        raise ValueError(
            "deform_conv2d: input, offset, weight and bias must share dtype and device, got "
            f"{[(t.dtype, str(t.device)) for t in tensors]}"
        )
    if not input.is_floating_point():
        raise ValueError(f"deform_conv2d: floating-point tensors expected, got {input.dtype}")
    if bias is not None and tuple(bias.shape) != (O,):
        raise ValueError(f"deform_conv2d: bias must be ({O},), got {tuple(bias.shape)}")
    return (stride, padding, dilation), (kh, kw, Ho, Wo)


def _sample_positions(offset, kh, kw, Ho, Wo, stride, padding, dilation):
    """(N, K, Ho, Wo) y and x sample positions in input pixels, K = kh * kw taps."""
    N = offset.shape[0]
    K = kh * kw
    kwargs = dict(device=offset.device, dtype=offset.dtype)
    base_y = torch.arange(Ho, **kwargs) * stride[0] - padding[0]
    base_x = torch.arange(Wo, **kwargs) * stride[1] - padding[1]
    tap_y = torch.arange(kh, **kwargs).repeat_interleave(kw) * dilation[0]
    tap_x = torch.arange(kw, **kwargs).repeat(kh) * dilation[1]
    off = offset.view(N, K, 2, Ho, Wo)
    y = base_y.view(1, 1, Ho, 1) + tap_y.view(1, K, 1, 1) + off[:, :, 0]
    x = base_x.view(1, 1, 1, Wo) + tap_x.view(1, K, 1, 1) + off[:, :, 1]
    return y, x


def _deform_conv2d_sampled(input, offset, weight, bias, kh, kw, Ho, Wo, stride, padding, dilation):
    N, C, H, W = input.shape
    O = weight.shape[0]
    K = kh * kw
    y, x = _sample_positions(offset, kh, kw, Ho, Wo, stride, padding, dilation)
    # grid_sample, align_corners=False: pixel i of a side of S pixels is at normalised
    # (2 i + 1) / S - 1. The input is zero-padded at the bottom and right to power-of-two sides
    # (zeros there are what the image's outside reads as anyway), so that the normalisation and
    # grid_sample's return to pixels are exact for integer positions: bilinear interpolation has a
    # kink at every integer, and a position rounded to just below it would take the gradient from
    # the other side (torchvision's, and the reference's, is the one-sided one from above).
    Hp, Wp = 1 << (H - 1).bit_length(), 1 << (W - 1).bit_length()
    if (Hp, Wp) != (H, W):
        input = F.pad(input, (0, Wp - W, 0, Hp - H))
    grid = torch.stack(((2 * x + 1) / Wp - 1, (2 * y + 1) / Hp - 1), dim=-1)  # (N, K, Ho, Wo, 2)
    grid = grid.view(N, K * Ho, Wo, 2)
    cols = F.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # (N, C, K * Ho, Wo) -> (N, C * K, Ho * Wo): row c * K + k, the weight's (c, i, j) order
    out = torch.matmul(weight.reshape(O, C * K), cols.reshape(N, C * K, Ho * Wo))
    out = out.view(N, O, Ho, Wo)
    return out if bias is None else out + bias.view(1, O, 1, 1)


def _deform_conv2d_sampled_op(input, offset, weight, bias, stride, padding, dilation):
    (stride, padding, dilation), (kh, kw, Ho, Wo) = _check(
        input, offset, weight, bias, stride, padding, dilation
    )
    return _deform_conv2d_sampled(
        input, offset, weight, bias, kh, kw, Ho, Wo, stride, padding, dilation
    )


# ``torch.ops.semianchor.deform_conv2d``: the "sampled" implementation as a composite operator (its
# autograd, fake-tensor and compile support come from the ATen ops it is written in)
_LIB = torch.library.Library("semianchor", "FRAGMENT")
_LIB.define(
    "deform_conv2d(Tensor input, Tensor offset, Tensor weight, Tensor? bias, int[2] stride, "
    "int[2] padding, int[2] dilation) -> Tensor"
)
_LIB.impl("deform_conv2d", _deform_conv2d_sampled_op, "CompositeImplicitAutograd")


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    *,
    impl: str = "auto",
) -> Tensor:
    """DCNv1 with ``torchvision.ops.deform_conv2d``'s arguments and offset layout (module doc).

    Args:
        input: (N, C, H, W). offset: (N, 2 kh kw, Ho, Wo), (dy, dx) per tap k = i kw + j.
        weight: (O, C, kh, kw). bias: (O,) or None.
        impl: "auto", "sampled" or "torchvision" (module doc).
    Returns:
        (N, O, Ho, Wo).
    """
    if impl not in DEFORM_CONV_IMPLS:
        raise ValueError(f"deform_conv2d: impl must be one of {DEFORM_CONV_IMPLS}, got {impl!r}")
    (stride, padding, dilation), (kh, kw, Ho, Wo) = _check(
        input, offset, weight, bias, stride, padding, dilation
    )
    if impl == "auto":
        impl = "torchvision" if input.is_cuda else "sampled"
    if impl == "torchvision":
        from torchvision.ops import deform_conv2d as torchvision_deform_conv2d

        return torchvision_deform_conv2d(
            input, offset, weight, bias, stride=stride, padding=padding, dilation=dilation
        )
    return torch.ops.semianchor.deform_conv2d(
        input, offset, weight, bias, stride, padding, dilation
    )


def deform_conv2d_reference(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> Tensor:
    """The specification (module doc), written as four explicit corner gathers per sample: slow,
    differentiable, no coordinate normalisation."""
    (stride, padding, dilation), (kh, kw, Ho, Wo) = _check(
        input, offset, weight, bias, stride, padding, dilation
    )
    N, C, H, W = input.shape
    K = kh * kw
    y, x = _sample_positions(offset, kh, kw, Ho, Wo, stride, padding, dilation)
    y0, x0 = torch.floor(y), torch.floor(x)
    ly, lx = y - y0, x - x0  # in [0, 1): the weights of the far corners
    flat = input.reshape(N, C, H * W)
    cols = 0
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        yy, xx = y0 + dy, x0 + dx
        # bilinear weight of this corner (linear in y and x, so the gradient at an integer
        # position is the one-sided one of the lower corner, as torchvision's); 0 outside
        wgt = (ly if dy else 1 - ly) * (lx if dx else 1 - lx)
        inside = (yy >= 0) & (yy <= H - 1) & (xx >= 0) & (xx <= W - 1)
        index = (yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1)).long().view(N, 1, -1)
        values = torch.gather(flat, 2, index.expand(N, C, index.shape[-1]))
        cols = cols + values * (wgt * inside).view(N, 1, -1)
    # (N, C, K * Ho * Wo) -> (N, C * K, Ho * Wo)
    cols = cols.view(N, C * K, Ho * Wo)
    out = torch.matmul(weight.reshape(weight.shape[0], C * K), cols)
    out = out.view(N, -1, Ho, Wo)
    return out if bias is None else out + bias.view(1, -1, 1, 1)
