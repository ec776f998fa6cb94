"""RetinaNet (Lin et al. 2017): R-50-FPN, P3-P7 (P6 from C5), 3 scales x 3 aspect ratios per level,
IoU >= 0.5 positive and < 0.4 negative (paper Sec. 4), focal loss, smooth-L1.

Detectron2's ``common/models/retinanet.py`` (its ``RetinaNet`` meta-architecture): the baseline
the label-assignment methods are compared against.
"""

from detectron2.model_zoo import get_config

model = get_config("common/models/retinanet.py").model
model.smooth_l1_beta = 0.1  # Detectron2's yacs RetinaNet default (the LazyCall default is 0 = L1)
