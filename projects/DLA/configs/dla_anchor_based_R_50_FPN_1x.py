"""DLA, anchor-based variant (paper Table 5 "DLA AB"): the same DLA detector on ATSS's anchor-based
box coder (Detectron2 deltas, weights 10, 10, 5, 5, from one 8 x stride square anchor per
location, no ReLU). Everything else as configs/COCO-Detection/dla_R_50_FPN_1x.py."""

from detectron2.config import LazyCall as L

from semianchor.model_zoo import load_base
from semianchor.modeling import DeltaBoxCoder

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/dla_R_50_FPN_1x.py"
)
model.box_coder = L(DeltaBoxCoder)(weights=(10.0, 10.0, 5.0, 5.0))
model.head.regression_activation = "none"
train.output_dir = "./output/dla_anchor_based_R_50_FPN_1x"
