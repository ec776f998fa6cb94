"""ResNet-FPN backbone whose P6/P7 come from P5 (ATSS, FCOS) or C5 (RetinaNet), by config."""

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7

__all__ = ["build_semianchor_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_semianchor_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """``cfg.MODEL.FPN.TOP_BLOCK_IN_FEATURE``: "p5" (default, ATSS paper) or "res5"."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    in_feature = cfg.MODEL.FPN.TOP_BLOCK_IN_FEATURE
    if in_feature == "p5":
        top_in = out_channels
    elif in_feature == "res5":
        top_in = bottom_up.output_shape()["res5"].channels
    else:
        raise ValueError(
            f"MODEL.FPN.TOP_BLOCK_IN_FEATURE must be 'p5' or 'res5', got {in_feature!r}"
        )
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(top_in, out_channels, in_feature=in_feature),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
