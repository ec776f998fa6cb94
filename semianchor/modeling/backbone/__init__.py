from .encoder_decoder import build_padet_backbone  # noqa: F401
from .fpn import build_semianchor_resnet_fpn_backbone  # noqa: F401
