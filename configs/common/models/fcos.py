"""FCOS (Tian et al. 2019/2020): Detectron2's ``common/models/fcos.py`` (its ``FCOS``: the RetinaNet
config made anchor-free, GN head towers, centerness, P6/P7 from P5, score sqrt(cls x centerness)).
"""

from detectron2.model_zoo import get_config

model = get_config("common/models/fcos.py").model
# P6 from P5: its width follows the FPN's (Detectron2 writes 256), so a shrunk FPN stays consistent
model.backbone.top_block.in_channels = "${..out_channels}"
