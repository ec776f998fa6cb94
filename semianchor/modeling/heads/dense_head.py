"""Dense prediction heads: classification and regression towers with optional branches.

A head returns a dict of per-level lists ``name -> [(N, C, Hi, Wi)] * L`` and declares each
output in ``head.outputs`` (:class:`HeadOutput`): its width d and whether it is predicted per
anchor (C = A_l * d, A_l anchors per location on level l) or per location (C = d). The
meta-architectures flatten, decode and post-process from that declaration: per-anchor outputs
become (N, R, d), per-location outputs (N, R_loc, d).
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, get_norm

__all__ = [
    "HeadOutput",
    "REGRESSION_ACTIVATIONS",
    "Scale",
    "DenseHead",
    "conv_tower",
    "relu_straight_through",
]

# "none": deltas; "relu": ltrb distances through a ReLU (FCOS/ATSS); "relu_straight_through": the
# same forward values, but the gradient passes below zero (see relu_straight_through)
REGRESSION_ACTIVATIONS = ("none", "relu", "relu_straight_through")


def relu_straight_through(x: torch.Tensor) -> torch.Tensor:
    """``relu(x)`` in the forward pass (bit for bit), identity in the backward pass.

    For ltrb distances: a plain ReLU gives an output at 0 no gradient, so a distance channel whose
    pre-activation is negative at every location (it can be born so: the last conv of a
    zero-mean init over non-negative tower features is dominated by the sum of its weights)
    never receives a box-loss gradient and stays 0 for the whole training, every box cut at its
    location's centre on that side (``benchmarks/DLA_COLLAPSE.md``, ``projects/DLA/DESIGN.md``).
    Only positives get a box loss, and a positive's centre lies inside its GT, so every target
    distance is > 0 and the loss's gradient at a distance clamped to 0 points up: passing it
    through revives the channel.
    """
    return x + (x.clamp(min=0) - x).detach()


@dataclass(frozen=True)
class HeadOutput:
    """Declaration of one head output: ``dim`` values per anchor (``per="anchor"``) or per
    location (``per="location"``, e.g. SAD's location classification)."""

    dim: int
    per: str = "anchor"

    def __post_init__(self):
        if self.per not in ("anchor", "location"):
            raise ValueError(f"HeadOutput.per must be 'anchor' or 'location', got {self.per!r}")
        if self.dim < 1:
            raise ValueError(f"HeadOutput.dim must be >= 1, got {self.dim}")


class Scale(nn.Module):
    """A learnable scalar multiplier (one per pyramid level, ATSS/FCOS)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_value)))

    def forward(self, x):
        return x * self.scale


def conv_tower(in_channels: int, conv_dims: List[int], norm: str) -> nn.Sequential:
    """3x3 conv (+ norm) + ReLU per entry of ``conv_dims``."""
    layers = []
    for out_channels in conv_dims:
        layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not norm))
        if norm:
            # "GN" -> GroupNorm(32, C); shared across levels like the official ATSS/FCOS heads.
            layers.append(get_norm(norm, out_channels))
        layers.append(nn.ReLU())
        in_channels = out_channels
    return nn.Sequential(*layers)


class DenseHead(nn.Module):
    """RetinaNet-style head with the ATSS "improvements" as options.

    Outputs (per level, A anchors per location):
        cls: (N, A*K, H, W) class logits, or (N, K, H, W) with ``cls_per_location`` (SAD).
        reg: (N, A*4, H, W) box regression (deltas, or ltrb distances through ReLU;
            ``regression_activation``: one of :data:`REGRESSION_ACTIVATIONS`).
        quality: (N, A, H, W) optional quality logit from the regression tower (centerness).
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        num_anchors: int,
        conv_dims: List[int],
        norm: str = "GN",
        prior_prob: float = 0.01,
        quality: Optional[str] = "centerness",
        scale_per_level: bool = True,
        regression_activation: str = "none",
        cls_per_location: bool = False,
    ):
        super().__init__()
        if len({s.channels for s in input_shape}) != 1:
            raise ValueError(
                f"all head input levels must have the same channels, got {input_shape}"
            )
        if regression_activation not in REGRESSION_ACTIVATIONS:
            raise ValueError(
                f"regression_activation must be one of {REGRESSION_ACTIVATIONS}, "
                f"got {regression_activation!r}"
            )
        in_channels = input_shape[0].channels
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(
                f"num_classes must be an int >= 1, got {num_classes!r} (None in a COCO-json config "
                "means 'from the json': semianchor.engine.classes.resolve_num_classes sets it)"
            )
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.quality = quality or None
        self.regression_activation = regression_activation
        self.cls_subnet = conv_tower(in_channels, conv_dims, norm)
        self.bbox_subnet = conv_tower(in_channels, conv_dims, norm)
        tower_out = conv_dims[-1] if conv_dims else in_channels
        self.cls_per_location = bool(cls_per_location)
        cls_channels = num_classes if cls_per_location else num_anchors * num_classes
        self.cls_score = nn.Conv2d(tower_out, cls_channels, 3, padding=1)
        self.bbox_pred = nn.Conv2d(tower_out, num_anchors * 4, 3, padding=1)
        if self.quality is not None:
            self.quality_pred = nn.Conv2d(tower_out, num_anchors, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in input_shape]) if scale_per_level else None

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)
        # RetinaNet prior (Lin et al. 2017, Sec. 4.1): start with p(fg) = prior_prob.
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        from ..anchors import build_semianchor_anchor_generator

        h = cfg.MODEL.SEMIANCHOR.HEAD
        num_anchors = build_semianchor_anchor_generator(cfg, input_shape).num_cell_anchors
        if len(set(num_anchors)) != 1:
            raise ValueError(f"every level must have the same number of anchors, got {num_anchors}")
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.SEMIANCHOR.NUM_CLASSES,
            "num_anchors": num_anchors[0],
            "conv_dims": [input_shape[0].channels] * h.NUM_CONVS,
            "norm": h.NORM,
            "prior_prob": h.PRIOR_PROB,
            "quality": h.QUALITY or None,
            "scale_per_level": h.SCALE_PER_LEVEL,
            "regression_activation": h.REGRESSION_ACTIVATION,
        }

    @property
    def outputs(self) -> Dict[str, HeadOutput]:
        """What :meth:`forward` returns, per output name (all per anchor here)."""
        cls_per = "location" if self.cls_per_location else "anchor"
        out = {"cls": HeadOutput(self.num_classes, cls_per), "reg": HeadOutput(4)}
        if self.quality is not None:
            out["quality"] = HeadOutput(1)
        return out

    @property
    def output_dims(self) -> Dict[str, int]:
        """Width of each output (``outputs`` without the per-anchor/per-location flag)."""
        return {k: v.dim for k, v in self.outputs.items()}

    def level_outputs(
        self, level: int, cls_feat: torch.Tensor, reg_feat: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """The outputs of one level from its tower features; subclasses add branches here."""
        reg = self.bbox_pred(reg_feat)
        if self.scales is not None:
            reg = self.scales[level](reg)
        if self.regression_activation == "relu":
            reg = torch.relu(reg)
        elif self.regression_activation == "relu_straight_through":
            reg = relu_straight_through(reg)
        out = {"cls": self.cls_score(cls_feat), "reg": reg}
        if self.quality is not None:
            out["quality"] = self.quality_pred(reg_feat)
        return out

    def forward(self, features: List[torch.Tensor]) -> Dict[str, List[torch.Tensor]]:
        out: Dict[str, List[torch.Tensor]] = {k: [] for k in self.outputs}
        for level, feature in enumerate(features):
            level_out = self.level_outputs(
                level, self.cls_subnet(feature), self.bbox_subnet(feature)
            )
            for k, v in level_out.items():
                out[k].append(v)
        return out
