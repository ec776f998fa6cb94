"""DLA's dense head: the ATSS head plus the auxiliary metric branch (DLA Sec. 3.3, Fig. 2)."""

import math
from typing import Dict, List, Optional

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec

from .dense_head import DenseHead, HeadOutput

__all__ = ["DLAHead"]


class DLAHead(DenseHead):
    """:class:`DenseHead` (classification and regression towers, per-level scale) plus the
    metric branch that learns the assignment metric m so NMS can rank by it.

    Metric branch (DLA Fig. 2): concatenate the classification and regression tower outputs
    (2C channels), 1x1 conv down to ``metric_channels`` + ReLU, 3x3 conv to one logit per anchor.
    The paper gives neither the reduced width nor an activation: we reduce to C (the tower width)
    and put a ReLU between the two convs (without it they collapse into a single linear 3x3
    conv). Initialisation as the other head convs (normal, std 0.01); the last bias starts at the
    focal-loss prior ``prior_prob`` like the classification logits, since the metric target is 0
    on almost every anchor.

    Outputs (per level, A anchors per location): ``cls`` (N, A*K, H, W), ``reg`` (N, A*4, H, W),
    ``metric`` (N, A, H, W) logits, and ``quality`` (N, A, H, W) only if a centerness branch is
    also asked for (DLA has none: its three losses are cls, box and metric, Eq. 8).
    """

    @configurable
    def __init__(
        self,
        *,
        metric_channels: Optional[int] = None,
        quality: Optional[str] = None,
        regression_activation: str = "relu",
        **kwargs,
    ):
        """
        Args:
            metric_channels: width after the 1x1 reduction; None -> the tower width C.
            quality, regression_activation: as :class:`DenseHead`, with DLA's defaults (no
                centerness branch; ltrb distances through a ReLU).
            kwargs: the other :class:`DenseHead` arguments.
        """
        super().__init__(quality=quality, regression_activation=regression_activation, **kwargs)
        conv_dims = kwargs["conv_dims"]
        tower_out = conv_dims[-1] if conv_dims else kwargs["input_shape"][0].channels
        metric_channels = int(metric_channels or tower_out)
        self.metric_reduce = nn.Conv2d(2 * tower_out, metric_channels, 1)
        self.metric_pred = nn.Conv2d(metric_channels, self.num_anchors, 3, padding=1)
        for conv in (self.metric_reduce, self.metric_pred):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, 0)
        prior_prob = kwargs.get("prior_prob", 0.01)
        nn.init.constant_(self.metric_pred.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        ret["metric_channels"] = cfg.MODEL.SEMIANCHOR.DLA.METRIC_CHANNELS or None
        return ret

    @property
    def outputs(self) -> Dict[str, HeadOutput]:
        out = super().outputs
        out["metric"] = HeadOutput(1)
        return out

    def level_outputs(
        self, level: int, cls_feat: torch.Tensor, reg_feat: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        out = super().level_outputs(level, cls_feat, reg_feat)
        joint = torch.relu(self.metric_reduce(torch.cat([cls_feat, reg_feat], dim=1)))
        out["metric"] = self.metric_pred(joint)
        return out
