"""ATSS anchor-free (FCOS + ATSS) R-18-FPN on the embedded shapes dataset."""

from detectron2.config import LazyCall as L

from semianchor.modeling import LTRBBoxCoder

from .atss_R18_shapes import dataloader, lr_multiplier, model, optimizer, train

model.box_coder = L(LTRBBoxCoder)()
model.head.regression_activation = "relu"
train.output_dir = "./output/quickstart_atss_anchor_free"
