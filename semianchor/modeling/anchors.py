"""Anchor generation: Detectron2's ``DefaultAnchorGenerator``, SSD priors with a different count
per level (:class:`SSDAnchorGenerator`, PADet), per-anchor strides, and the assigner's static
inputs on a generator's anchors."""

import math
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from detectron2.modeling.anchor_generator import (
    BufferList,
    DefaultAnchorGenerator,
    build_anchor_generator,
)
from detectron2.structures import Boxes, Instances

from .assigners.base import AssignInputs, pad_gt_instances

__all__ = [
    "SSDAnchorGenerator",
    "anchor_strides",
    "build_semianchor_anchor_generator",
    "generator_assign_inputs",
    "ssd_sizes",
]


def ssd_sizes(input_size: int, fractions: Sequence[float], last_max: float = 1.05):
    """SSD300-COCO style min/max box sizes scaled to ``input_size`` (PADet gives no sizes, only
    "follow the settings in SSD", Sec. 3; COCO is its data set and SSD's COCO models use these
    fractions; choice P3 in projects/PADet/DESIGN.md):
    min_k = input * fraction_k, max_k = min_{k+1}, the last max = ``last_max`` * input."""
    mins = [input_size * f for f in fractions]
    maxs = mins[1:] + [input_size * last_max]
    return mins, maxs


class SSDAnchorGenerator(DefaultAnchorGenerator):
    """SSD priors (Liu et al. 2016): per level one scale ``min_size`` with ``aspect_ratios`` plus
    the extra square of side sqrt(min_size * max_size) right after ratio 1, so A_l =
    len(ratios_l) + 1 may differ by level (PADet: ratios (1, 2, 3, 1/2, 1/3) -> 6 on D1-D4,
    (1, 2, 1/2) -> 4 on D5-D6). Centres at (i + offset) * stride, Detectron2's order (location
    major, the A_l cell anchors contiguous), so it is a drop-in ``DefaultAnchorGenerator``."""

    def __init__(
        self,
        *,
        min_sizes: Sequence[float],
        max_sizes: Sequence[float],
        aspect_ratios: Sequence[Sequence[float]],
        strides: Sequence[int],
        offset: float = 0.5,
    ):
        nn.Module.__init__(self)
        L = len(strides)
        if not (len(min_sizes) == len(max_sizes) == len(aspect_ratios) == L):
            raise ValueError(
                "SSDAnchorGenerator needs one min/max size and ratio list per level "
                f"({L} strides), got {len(min_sizes)}, {len(max_sizes)}, {len(aspect_ratios)}"
            )
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"offset must be in [0, 1), got {offset}")
        self.strides = list(strides)
        self.num_features = L
        self.offset = float(offset)
        cells = []
        for lo, hi, ratios in zip(min_sizes, max_sizes, aspect_ratios):
            if not 0 < lo <= hi:
                raise ValueError(f"need 0 < min_size <= max_size, got {lo}, {hi}")
            boxes = []
            for r in ratios:
                w, h = lo * math.sqrt(r), lo / math.sqrt(r)
                boxes.append([-w / 2, -h / 2, w / 2, h / 2])
                if r == 1.0:  # SSD's extra square prior
                    s = math.sqrt(lo * hi)
                    boxes.append([-s / 2, -s / 2, s / 2, s / 2])
            cells.append(torch.tensor(boxes, dtype=torch.float32))
        self.cell_anchors = BufferList(cells)


def build_semianchor_anchor_generator(cfg, input_shape):
    return build_anchor_generator(cfg, input_shape)


def generator_assign_inputs(
    anchor_generator: DefaultAnchorGenerator,
    anchors: Union[List[Boxes], Tensor],
    gt_instances: List[Instances],
    num_classes: int,
    class_agnostic: bool = False,
    box_coder=None,
    num_anchors_per_level: Optional[List[int]] = None,
) -> AssignInputs:
    """The assigner's static inputs (no predictions) on an anchor generator's anchors: the
    generator's per-level ``Boxes`` (concatenated), or a (R, 4) / (N, R, 4) tensor (per-image
    anchors) with ``num_anchors_per_level``; their levels' strides, the generator's cell anchors
    per location and the padded GTs (:func:`~semianchor.modeling.assigners.pad_gt_instances`).
    ``class_agnostic``: every GT is class 0 (objectness, as an RPN's)."""
    if isinstance(anchors, Tensor):
        if num_anchors_per_level is None:
            raise ValueError("anchors given as a tensor need num_anchors_per_level")
        all_anchors, nums = anchors, list(num_anchors_per_level)
    else:
        all_anchors, nums = Boxes.cat(anchors).tensor, [len(a) for a in anchors]  # (R, 4)
    gt_boxes, gt_classes, gt_counts = pad_gt_instances(gt_instances, all_anchors.device)
    return AssignInputs(
        anchors=all_anchors,
        num_anchors_per_level=nums,
        anchor_strides=anchor_strides(anchor_generator, nums, all_anchors.device),
        anchors_per_location=list(anchor_generator.num_cell_anchors),
        gt_boxes=gt_boxes,
        gt_classes=torch.zeros_like(gt_classes) if class_agnostic else gt_classes,
        gt_counts=gt_counts,
        num_classes=num_classes,
        box_coder=box_coder,
    )


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
