"""ATSS anchor-free (FCOS + ATSS) R-50-FPN, COCO 1x. Paper (COCO minival): 39.2 AP."""

from ..common.models.atss_anchor_free import model
from .atss_R_50_FPN_1x import dataloader, lr_multiplier, optimizer, train

model.backbone.bottom_up.freeze_at = 2
