"""Anchor generation: Detectron2's ``DefaultAnchorGenerator`` plus per-anchor strides."""

from typing import List

import torch
from torch import Tensor

from detectron2.modeling.anchor_generator import DefaultAnchorGenerator, build_anchor_generator

__all__ = ["anchor_strides", "build_semianchor_anchor_generator"]


def build_semianchor_anchor_generator(cfg, input_shape):
    return build_anchor_generator(cfg, input_shape)


def anchor_strides(
    anchor_generator: DefaultAnchorGenerator, num_anchors_per_level: List[int], device
) -> Tensor:
    """(R,) stride of each anchor's level."""
    return torch.cat(
        [
            torch.full((n,), float(s), device=device)
            for n, s in zip(num_anchors_per_level, anchor_generator.strides)
        ]
    )
