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
positions in the last bits); :func:`~semianchor.layers.deform_conv2d_reference` (explicit
four-corner gathers, no coordinate normalisation) is the pure-PyTorch specification the tests hold
both against.

Scope: one offset group, one weight group, no modulation mask (what the feature alignment of PADet
uses); anything else is a ValueError rather than a silently different result.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import IntPair, check_deform_conv2d
from .reference.deform_conv import sample_positions

__all__ = ["DEFORM_CONV_IMPLS", "deform_conv2d"]

DEFORM_CONV_IMPLS = ("auto", "sampled", "torchvision")


def _deform_conv2d_sampled(input, offset, weight, bias, kh, kw, Ho, Wo, stride, padding, dilation):
    N, C, H, W = input.shape
    O = weight.shape[0]
    K = kh * kw
    y, x = sample_positions(offset, kh, kw, Ho, Wo, stride, padding, dilation)
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
    (stride, padding, dilation), (kh, kw, Ho, Wo) = check_deform_conv2d(
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
    (stride, padding, dilation), (kh, kw, Ho, Wo) = check_deform_conv2d(
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
