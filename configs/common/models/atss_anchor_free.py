"""ATSS, anchor-free ("FCOS + ATSS"): ltrb distances (stride units, ReLU) from each location,
same ATSS assignment, same head and losses. The anchor box (8 x stride) only serves the
assignment's IoU/centre statistics, as in the paper's point-based variant."""

from detectron2.config import LazyCall as L

from semianchor.modeling import LTRBBoxCoder

from .atss import model

model.box_coder = L(LTRBBoxCoder)()
model.head.regression_activation = "relu"
