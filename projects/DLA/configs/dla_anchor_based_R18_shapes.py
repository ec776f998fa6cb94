"""DLA, anchor-based variant, on the embedded shapes dataset: differs from
configs/quickstart/atss_R18_shapes.py (anchor-based ATSS) only by what DLA changes."""

from detectron2.config import LazyCall as L

from semianchor.model_zoo import load_base
from semianchor.modeling import DeltaBoxCoder

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/dla_R18_shapes.py"
)
model.box_coder = L(DeltaBoxCoder)(weights=(10.0, 10.0, 5.0, 5.0))
model.head.regression_activation = "none"
train.output_dir = "./output/quickstart_dla_anchor_based"
