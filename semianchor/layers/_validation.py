"""Input checks shared by the op wrappers of :mod:`semianchor.layers`.

The wrappers are the one place that raises the user-facing errors (ValueError naming the
argument), before choosing the kernel or the reference, so both see the same inputs and give the
same message. The checks that read tensor values (finite coordinates, counts and indices in range)
run here for the references and the CUDA kernels; the CPU kernels run the same checks in C++ with
the same messages (``csrc/checks.h``), which saves a dozen small ATen launches per call on the
latency-bound CPU path. The kernels' own shape / dtype checks only guard direct
``torch.ops.semianchor`` calls.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch

__all__ = [
    "as_float_boxes",
    "as_index_tensor",
    "as_levels",
    "check_deform_conv2d",
    "check_candidates",
    "check_finite",
    "check_gts",
    "check_gt_values",
    "check_matched_gt",
    "check_same_device",
    "device_of",
]


def as_float_boxes(x, name: str, shapes: str, dims: Sequence[int]) -> torch.Tensor:
    """``x`` as a float32 tensor of boxes (last dim 4) with one of ``dims`` dimensions.

    fp16 / bf16 / fp64 inputs are converted to fp32 (all kernels compute in fp32)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {shapes}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.dim() not in dims or x.shape[-1] != 4:
        raise ValueError(f"{name} must have shape {shapes}, got {tuple(x.shape)}")
    return x.float()


def device_of(x, name: str, shapes: str) -> torch.device:
    """The device of the tensor ``x`` that places an op (a ValueError if it is not a tensor)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {shapes}, got {type(x).__name__}")
    return x.device


def as_index_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {x.dtype}")
    return x.long()


def as_levels(num_anchors_per_level, R: int) -> List[int]:
    """``num_anchors_per_level`` as a list of non-negative ints summing to R."""
    try:
        levels = [int(n) for n in num_anchors_per_level]
    except TypeError:
        raise ValueError(
            f"num_anchors_per_level must be a sequence of ints, got {num_anchors_per_level!r}"
        ) from None
    if any(n < 0 for n in levels) or sum(levels) != R:
        raise ValueError(
            f"num_anchors_per_level must be non-negative and sum to R = {R} anchors, got "
            f"{levels} (sum {sum(levels)})"
        )
    return levels


def check_same_device(device: torch.device, **tensors) -> None:
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise ValueError(f"{name} is on {t.device} but the other inputs are on {device}")


def check_finite(x: torch.Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless every value of ``x`` is finite."""
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(message)


def _first(mask: torch.Tensor) -> Union[None, Tuple[int, ...]]:
    """The first True position of ``mask`` in row-major order (the kernels' scan order)."""
    where = mask.nonzero()
    return tuple(int(i) for i in where[0]) if where.shape[0] else None


def check_gts(gt_boxes, gt_counts, num_images=None, values=True):
    """Validate padded GTs: gt_boxes (N, M, 4) float, gt_counts (N,) ints in [0, M].

    Returns them as float32 / int64. Valid GTs (m < gt_counts[n]) must be finite; padding is never
    read. ``values=False`` skips the checks that read the data (module docstring)."""
    gt_boxes = as_float_boxes(gt_boxes, "gt_boxes", "(N, M, 4)", (3,))
    N, M = gt_boxes.shape[:2]
    gt_counts = as_index_tensor(gt_counts, "gt_counts")
    if gt_counts.shape != (N,):
        raise ValueError(f"gt_counts must have shape (N,) = ({N},), got {tuple(gt_counts.shape)}")
    if num_images is not None and N != num_images:
        raise ValueError(f"gt_boxes must hold N = {num_images} images, got {N}")
    check_same_device(gt_boxes.device, gt_counts=gt_counts)
    if values:
        check_gt_values(gt_boxes, gt_counts)
    return gt_boxes, gt_counts


def check_gt_values(gt_boxes: torch.Tensor, gt_counts: torch.Tensor) -> None:
    """gt_counts in [0, M] and the valid GTs finite (validated shapes)."""
    N, M = gt_boxes.shape[:2]
    bad = _first((gt_counts < 0) | (gt_counts > M)) if N else None
    if bad is not None:
        raise ValueError(
            f"gt_counts must lie in [0, M] = [0, {M}], got {int(gt_counts[bad])} for image {bad[0]}"
        )
    if N * M:
        valid = torch.arange(M, device=gt_boxes.device)[None, :] < gt_counts[:, None]
        check_finite(
            gt_boxes[valid], "gt_boxes holds non-finite coordinates in valid (non-padded) GTs"
        )


def check_matched_gt(matched_gt: torch.Tensor, gt_counts: torch.Tensor) -> None:
    """matched_gt (N, R): -1 or a valid GT index of its image."""
    bad = _first((matched_gt < -1) | (matched_gt >= gt_counts[:, None]))
    if bad is not None:
        raise ValueError(
            "matched_gt must be -1 or a valid GT index (< gt_counts[n]) per image, got "
            f"{int(matched_gt[bad])} for image {bad[0]}"
        )


def check_candidates(
    cand_idx: torch.Tensor, cand_scores: torch.Tensor, gt_counts: torch.Tensor, R: int
) -> None:
    """ATSS candidates (N, M, C): indices -1 or in [0, R), scores finite where a valid GT uses
    the candidate."""
    if not cand_idx.numel():
        return
    bad = _first((cand_idx < -1) | (cand_idx >= R))
    if bad is not None:
        raise ValueError(
            f"cand_idx must hold -1 or anchor indices in [0, R = {R}), got {int(cand_idx[bad])}"
        )
    M = cand_idx.shape[1]
    used = (cand_idx >= 0) & (
        torch.arange(M, device=cand_idx.device)[None, :, None] < gt_counts[:, None, None]
    )
    check_finite(cand_scores[used], "cand_scores holds non-finite scores for valid candidates")


IntPair = Union[int, Tuple[int, int]]


def _pair(value: IntPair, name: str) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"deform_conv2d: {name} must be an int or a pair, got {value!r}")
    return pair


def check_deform_conv2d(input, offset, weight, bias, stride, padding, dilation):
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
