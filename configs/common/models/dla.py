"""DLA (Jiang et al. 2022), anchor-free as the paper's default: the ATSS anchor-free detector
(ltrb distances in stride units, ReLU, from each location; the 8 x stride anchor box is only the
prior of IoU_prior and of the candidates' centres) with DLA's assigner (k = 10, gamma = 1), the
metric head instead of centerness, GIoU loss weighted by m (b = 2) and NMS ranked by the
predicted metric. The anchor-based variant: projects/DLA/configs/dla_anchor_based_R_50_FPN_1x.py.
"""

from detectron2.config import LazyCall as L

from semianchor.modeling import DLA
from semianchor.modeling.assigners import DLAAssigner
from semianchor.modeling.heads.dla_head import DLAHead

from ..data.constants import dataset_sizes
from .atss_anchor_free import model

model._target_ = DLA
model.head._target_ = DLAHead
model.head.quality = None  # DLA's three losses are cls, box and metric (Eq. 8): no centerness
model.head.metric_channels = None  # 1x1 reduction to the tower width
model.assigner = L(DLAAssigner)(topk=10, gamma=1.0, center_eps=0.01)
model.box_loss_weighting = "assigner"  # w = m^gamma, normalised by sum(w) (Eq. 6)
model.box_loss_weight = 2.0  # b of Eq. 8
del model.quality_loss_weight  # no centerness branch
model.score_mode = "metric"  # NMS ranks by the predicted metric (Sec. 3.3)
model.alpha0 = 0.9
model.fixed_alpha = None  # a number in [0, 1]: Table 2's fixed-alpha ablation
# The training length of alpha's schedule (Eq. 2): epochs = iterations / iters_per_epoch. Values of
# the COCO 1x recipe (batch 16, 90k iterations); every config that changes the data, the batch or
# train.max_iter sets both again. tools/lazyconfig_train_net.py replaces them with the run's real
# dataset length (model.set_training_schedule), so an override of train.max_iter is followed there;
# any other trainer (e.g. Detectron2's SimpleTrainer on instantiate(cfg.model)) uses these.
model.iters_per_epoch = dataset_sizes["coco_2017_train"] / 16
model.max_iter = 90000
model.metric_loss_weight = 1.0  # c of Eq. 8 (a = 1 is the classification loss's implicit weight)
model.metric_loss_beta = 2.0
