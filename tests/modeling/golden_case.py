"""The tiny fixed case of the golden tests: a real META_ARCH with a head whose outputs the test
sets by hand, so that every loss term and every inference step can be checked against numbers
computed in the test from the paper's equation.

The case: one pyramid level of stride 16 on a 32 x 32 image (2 x 2 locations, centres at
(8, 8), (24, 8), (8, 24), (24, 24), offset 0.5), A anchors per location (by default two squares of
16 and 32 px), the predictions given as (N, S, d) tensors in Detectron2's anchor order (location
major, a location's A anchors contiguous) and laid out as the head's (N, A * d, H, W) maps.

Oracles that are not the library: Detectron2's ``Box2BoxTransform`` (decode / encode),
torchvision's ``box_iou`` and ``generalized_box_iou``, fvcore's ``sigmoid_focal_loss``; every
other number is written in the test (``math`` on Python floats).
"""

import math
import types
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from semianchor.modeling.heads.dense_head import HeadOutput

SIDE = 32
STRIDE = 16
GRID = (2, 2)
# the 8 anchors of the default case: per location a 16 px and a 32 px square
ANCHORS_16_32 = [
    [0, 0, 16, 16],
    [-8, -8, 24, 24],
    [16, 0, 32, 16],
    [8, -8, 40, 24],
    [0, 16, 16, 32],
    [-8, 8, 24, 40],
    [16, 16, 32, 32],
    [8, 8, 40, 40],
]


class NullBackbone(Backbone):
    """Declares one feature map per stride; never runs (the tests feed the head's outputs)."""

    def __init__(self, strides: Sequence[int] = (STRIDE,)):
        super().__init__()
        self.strides = list(strides)

    def forward(self, x):
        raise AssertionError("the golden tests set the head's outputs by hand")

    def output_shape(self):
        return {f"p{i}": ShapeSpec(channels=1, stride=s) for i, s in enumerate(self.strides)}


class FixedHead(nn.Module):
    """A head that only declares its outputs (``outputs``, ``num_anchors``)."""

    def __init__(self, outputs: Dict[str, HeadOutput], num_anchors):
        super().__init__()
        self._outputs = dict(outputs)
        self.num_anchors = num_anchors

    @property
    def outputs(self) -> Dict[str, HeadOutput]:
        return dict(self._outputs)

    def forward(self, features):
        raise AssertionError("the golden tests set the head's outputs by hand")


def anchor_generator(sizes=((16, 32),), ratios=((1.0,),), strides=(STRIDE,)):
    return DefaultAnchorGenerator(
        sizes=[list(s) for s in sizes],
        aspect_ratios=[list(r) for r in ratios],
        strides=list(strides),
        offset=0.5,
    )


def detector_kwargs(head, generator=None, num_levels=1, **kw):
    """Constructor arguments every golden detector shares."""
    gen = generator or anchor_generator()
    return dict(
        backbone=NullBackbone([int(s) for s in gen.strides]),
        head=head,
        head_in_features=[f"p{i}" for i in range(num_levels)],
        anchor_generator=gen,
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
        **kw,
    )


def level_map(flat: Tensor, grid: Tuple[int, int], per_cell: int) -> Tensor:
    """(N, H * W * c, d) in Detectron2's order -> the head's (N, c * d, H, W) map (the inverse of
    ``permute_to_N_HWA_K``)."""
    N, S, d = flat.shape
    H, W = grid
    if S != H * W * per_cell:
        raise ValueError(f"{S} rows for a {H}x{W} grid with {per_cell} per location")
    return flat.reshape(N, H, W, per_cell, d).permute(0, 3, 4, 1, 2).reshape(N, per_cell * d, H, W)


def head_maps(model, flat: Dict[str, Tensor], grids: List[Tuple[int, int]]):
    """{name: (N, S, d)} -> {name: [(N, C, H_l, W_l)] * L} as the model's head declares them."""
    outputs = model.head_outputs
    cells = list(model.anchor_generator.num_cell_anchors)
    maps = {}
    for name, x in flat.items():
        per_anchor = outputs[name].per == "anchor"
        levels, start = [], 0
        for (h, w), a in zip(grids, cells):
            c = a if per_anchor else 1
            levels.append(level_map(x[:, start : start + h * w * c], (h, w), c))
            start += h * w * c
        if start != x.shape[1]:
            raise ValueError(f"{name}: {x.shape[1]} rows, the levels have {start}")
        maps[name] = levels
    return maps


def features(grids):
    return [torch.zeros(1, 1, h, w) for h, w in grids]


def gt_instances(boxes, classes, size=(SIDE, SIDE)) -> Instances:
    return Instances(
        size,
        gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).view(-1, 4)),
        gt_classes=torch.tensor(classes, dtype=torch.int64),
    )


def training_losses(model, flat, gts, grids=(GRID,), iteration=0) -> Dict[str, float]:
    """The model's training losses on hand-set predictions, as Python floats."""
    model.train()
    with EventStorage(iteration):
        losses = model.forward_training(None, features(grids), head_maps(model, flat, grids), gts)
    return {k: float(v) for k, v in losses.items()}


def logged_scalars(model, flat, gts, grids=(GRID,), iteration=0) -> Dict[str, float]:
    """The scalars one training step on hand-set predictions puts in the event storage."""
    model.train()
    with EventStorage(iteration) as storage:
        model.forward_training(None, features(grids), head_maps(model, flat, grids), gts)
    return {k: v for k, (v, _) in storage.latest().items()}


def detections(model, flat, grids=(GRID,), size=(SIDE, SIDE)):
    """The model's inference on hand-set predictions: per image (boxes, scores, classes)."""
    model.eval()
    N = next(iter(flat.values())).shape[0]
    images = types.SimpleNamespace(image_sizes=[size] * N)
    with torch.no_grad():
        out = model.forward_inference(images, features(grids), head_maps(model, flat, grids))
    return [(r.pred_boxes.tensor, r.scores, r.pred_classes) for r in out]


def ema_first(count: float, momentum: float = 0.9, initial: float = 100.0) -> float:
    """The first value of a loss normaliser's EMA (Detectron2's RetinaNet/FCOS: start at 100,
    the count clamped at 1)."""
    return initial * momentum + (1.0 - momentum) * max(count, 1.0)


def oracle_decode(weights, anchors, deltas) -> Tensor:
    """Detectron2's ``Box2BoxTransform.apply_deltas``: (R, 4) anchors, (R, 4) deltas."""
    t = Box2BoxTransform(weights=tuple(weights))
    return t.apply_deltas(_t(deltas), _t(anchors))


def oracle_encode(weights, anchors, boxes) -> Tensor:
    """Detectron2's ``Box2BoxTransform.get_deltas``: the deltas taking ``anchors`` to ``boxes``."""
    return Box2BoxTransform(weights=tuple(weights)).get_deltas(_t(anchors), _t(boxes))


def _t(x) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float32).view(-1, 4)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def softplus(x: float) -> float:
    """-log(sigmoid(-x)) = log(1 + e^x)."""
    return math.log1p(math.exp(x))


def smooth_l1(d: float, beta: float) -> float:
    d = abs(d)
    return 0.5 * d * d / beta if d < beta else d - 0.5 * beta


def assert_detections(got, expected, atol=1e-5):
    """``got`` (boxes, scores, classes), best first, equals ``expected`` [(box, score, class)]
    sorted by decreasing score."""
    boxes, scores, classes = got
    assert len(scores) == len(expected), (boxes, scores, classes, expected)
    expected = sorted(expected, key=lambda e: -e[1])
    for (b, s, c), box, score, cls in zip(expected, boxes, scores, classes):
        torch.testing.assert_close(box, torch.as_tensor(b, dtype=torch.float32), atol=atol, rtol=0)
        assert abs(float(score) - s) < atol, (float(score), s)
        assert int(cls) == c
