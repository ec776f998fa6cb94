"""Pure-PyTorch specification of :func:`~semianchor.layers.deform_conv2d` (DCNv1; the sampling
rule is in :mod:`semianchor.layers.deform_conv`)."""

from typing import Optional

import torch
from torch import Tensor

from .._validation import IntPair, check_deform_conv2d

__all__ = ["deform_conv2d_reference", "sample_positions"]


def sample_positions(offset, kh, kw, Ho, Wo, stride, padding, dilation):
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


def deform_conv2d_reference(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> Tensor:
    """The specification (:mod:`semianchor.layers.deform_conv`), written as four explicit corner
    gathers per sample: slow, differentiable, no coordinate normalisation. Validates its inputs
    as :func:`~semianchor.layers.deform_conv2d` does."""
    (stride, padding, dilation), (kh, kw, Ho, Wo) = check_deform_conv2d(
        input, offset, weight, bias, stride, padding, dilation
    )
    N, C, H, W = input.shape
    K = kh * kw
    y, x = sample_positions(offset, kh, kw, Ho, Wo, stride, padding, dilation)
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
