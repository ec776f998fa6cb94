"""SAD's head (Fig. 4): FCOS-style GN towers; location classification on the cls tower (K logits
per location), box deltas (4A) and the anchor-classification logits (A) on the regression tower."""

import math
from typing import Dict, List

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec

from .dense_head import DenseHead, HeadOutput

__all__ = ["SADHead"]


class SADHead(DenseHead):
    """:class:`DenseHead` with ``cls_per_location`` and, when ``anchor_classification`` is on,
    the AC branch: one 3x3 conv on the regression tower with A outputs per location (choice S12
    in projects/SAD/DESIGN.md; the paper: "the anchor classification head shares features with
    the regression head"), normal(0.01)
    weights and the focal prior ``prior_prob`` as bias (choice S10). The paper mentions neither
    centerness nor a per-level scale: both off by default.

    Outputs per level: ``cls`` (N, K, H, W) per location, ``reg`` (N, 4A, H, W),
    ``ac`` (N, A, H, W).
    """

    @configurable
    def __init__(
        self,
        *,
        anchor_classification: bool = True,
        quality=None,
        scale_per_level: bool = False,
        cls_per_location: bool = True,
        **kwargs,
    ):
        super().__init__(
            quality=quality,
            scale_per_level=scale_per_level,
            cls_per_location=cls_per_location,
            **kwargs,
        )
        self.anchor_classification = bool(anchor_classification)
        if self.anchor_classification:
            tower_out = self.bbox_pred.in_channels
            self.ac_pred = nn.Conv2d(tower_out, self.num_anchors, 3, padding=1)
            nn.init.normal_(self.ac_pred.weight, std=0.01)
            prior = kwargs.get("prior_prob", 0.01)
            nn.init.constant_(self.ac_pred.bias, -math.log((1 - prior) / prior))

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        ret["anchor_classification"] = cfg.MODEL.SEMIANCHOR.SAD.ANCHOR_CLASSIFICATION
        ret["cls_per_location"] = True
        return ret

    @property
    def outputs(self) -> Dict[str, HeadOutput]:
        out = super().outputs
        if self.anchor_classification:
            out["ac"] = HeadOutput(1)
        return out

    def level_outputs(self, level: int, cls_feat: torch.Tensor, reg_feat: torch.Tensor):
        out = super().level_outputs(level, cls_feat, reg_feat)
        if self.anchor_classification:
            out["ac"] = self.ac_pred(reg_feat)
        return out
