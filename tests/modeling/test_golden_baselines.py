"""Golden values of the baselines as our configs build them (Detectron2's ``RetinaNet`` and
``FCOS`` from ``configs/common/models/retinanet.py`` / ``fcos.py``): what the configs choose
(focal alpha 0.25 / gamma 2, smooth-L1 beta 0.1 and the {0.4, 0.5} matcher for RetinaNet; centre
sampling 1.5, GIoU, centerness, the sqrt(p_cls x p_ctr) score gated at 0.2 for FCOS) shows in
the loss values and the detections, against hand computations.

RetinaNet's case: the four 16 px anchors of ``test_golden_noisy`` with GT0 = [2, 2, 18, 14]
(class 1) and GT1 = [17, 15, 31, 31] (class 0): IoU 0.60 and 0.78 make anchors 0 and 3 positive,
every other IoU is below 0.4. FCOS's case: one level of stride 8 on a 32 px image (4 x 4 points
at (8i + 4, 8j + 4)), the same GTs.
"""

import math
import os

import pytest
import torch
from fvcore.nn import sigmoid_focal_loss
from torchvision.ops import box_iou, generalized_box_iou

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from . import golden_case as golden
from .conftest import REPO, shrink_lazy_model

K = 2
ANCHORS = [[0, 0, 16, 16], [16, 0, 32, 16], [0, 16, 16, 32], [16, 16, 32, 32]]
GTS = [[2, 2, 18, 14], [17, 15, 31, 31]]
GT_CLASSES = [1, 0]


def build(config):
    cfg = LazyConfig.load(os.path.join(REPO, config))
    model = shrink_lazy_model(cfg.model)
    model.num_classes = K
    torch.manual_seed(0)
    return instantiate(model)


def ema(count, initial):
    """Detectron2's first EMA value of the loss normaliser (momentum 0.9)."""
    return 0.9 * initial + 0.1 * max(count, 1)


# ---------------------------------------------------------------- RetinaNet
CLS = [[-1.0, 0.8], [-2.0, -1.5], [-0.5, -3.0], [1.2, -0.7]]
DELTAS = [[0.05, -0.03, 0.1, -0.2], [0.0] * 4, [0.0] * 4, [-0.1, 0.04, -0.3, 0.2]]


def test_retinanet_config_losses():
    model = build("configs/common/models/retinanet.py")
    assert model.smooth_l1_beta == 0.1
    anchors = [Boxes(torch.tensor(ANCHORS, dtype=torch.float32))]
    with EventStorage():
        labels, boxes = model.label_anchors(anchors, [golden.gt_instances(GTS, GT_CLASSES)])
        losses = model.losses(
            anchors, [torch.tensor([CLS])], labels, [torch.tensor([DELTAS])], boxes
        )
    iou = box_iou(torch.tensor(ANCHORS).float(), torch.tensor(GTS).float())
    assert iou[0, 0] >= 0.5 and iou[3, 1] >= 0.5 and (iou[[1, 2]] < 0.4).all()
    positives = {0: 0, 3: 1}
    targets = torch.zeros(4, K)
    for j, g in positives.items():
        targets[j, GT_CLASSES[g]] = 1.0
    cls = float(sigmoid_focal_loss(torch.tensor(CLS), targets, 0.25, 2.0, reduction="sum"))
    box = 0.0
    for j, g in positives.items():
        target = golden.oracle_encode((1.0, 1.0, 1.0, 1.0), ANCHORS[j], GTS[g])[0].tolist()
        box += sum(golden.smooth_l1(d - t, 0.1) for d, t in zip(DELTAS[j], target))
    assert float(losses["loss_cls"]) == pytest.approx(cls / ema(2, 100), rel=1e-5)
    assert float(losses["loss_box_reg"]) == pytest.approx(box / ema(2, 100), rel=1e-5)


# ---------------------------------------------------------------- FCOS
POINTS = [(8.0 * x + 4, 8.0 * y + 4) for y in range(4) for x in range(4)]


def fcos_positives():
    """{point: gt}: inside the GT, within 1.5 x stride of its centre (both axes); one level, so
    no size range; the smaller GT wins a point claimed twice."""
    out = {}
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    for j, (px, py) in enumerate(POINTS):
        for g, (x1, y1, x2, y2) in enumerate(GTS):
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            inside = min(px - x1, py - y1, x2 - px, y2 - py) > 0
            near = max(abs(px - cx), abs(py - cy)) < 1.5 * 8
            if inside and near and (j not in out or area(GTS[g]) < area(GTS[out[j]])):
                out[j] = g
    return out


def fcos_flat():
    g = torch.Generator().manual_seed(0)
    cls = torch.randn(16, K, generator=g)
    ltrb = torch.rand(16, 4, generator=g) * 1.5 + 0.25  # distances in strides
    ctr = torch.randn(16, 1, generator=g)
    return cls, ltrb, ctr


def fcos_predictions(cls, ltrb, ctr):
    return [[golden.level_map(x[None], (4, 4), 1)] for x in (cls, ltrb, ctr)]


def test_fcos_config_losses():
    model = build("configs/common/models/fcos.py")
    features = [torch.zeros(1, 1, 4, 4)]
    centres = model.anchor_generator(features)[0].get_centers()
    torch.testing.assert_close(centres, torch.tensor(POINTS))
    cls, ltrb, ctr = fcos_flat()
    model.train()
    with EventStorage():
        losses = model.forward_training(
            None, features, fcos_predictions(cls, ltrb, ctr), [golden.gt_instances(GTS, GT_CLASSES)]
        )
    positives = fcos_positives()
    assert positives == {0: 0, 1: 0, 4: 0, 5: 0, 10: 1, 11: 1, 14: 1, 15: 1}
    targets = torch.zeros(16, K)
    for j, g in positives.items():
        targets[j, GT_CLASSES[g]] = 1.0
    n = ema(len(positives), 300)
    focal = float(sigmoid_focal_loss(cls, targets, 0.25, 2.0, reduction="sum"))
    giou, bce = 0.0, 0.0
    for j, g in positives.items():
        (px, py), (l, t, r, b) = POINTS[j], ltrb[j].tolist()
        box = torch.tensor([[px - 8 * l, py - 8 * t, px + 8 * r, py + 8 * b]])
        giou += 1.0 - float(generalized_box_iou(box, torch.tensor([GTS[g]]).float()))
        x1, y1, x2, y2 = GTS[g]
        dl, dt, dr, db = px - x1, py - y1, x2 - px, y2 - py
        c = math.sqrt(min(dl, dr) / max(dl, dr) * min(dt, db) / max(dt, db))
        x = float(ctr[j])
        bce += c * golden.softplus(-x) + (1 - c) * golden.softplus(x)
    assert float(losses["loss_fcos_cls"]) == pytest.approx(focal / n, rel=1e-5)
    assert float(losses["loss_fcos_loc"]) == pytest.approx(giou / n, rel=1e-5)
    assert float(losses["loss_fcos_ctr"]) == pytest.approx(bce / n, rel=1e-5)


def test_fcos_score_is_sqrt_cls_times_centerness_gated_at_0_2():
    """Unlike ATSS, FCOS gates on the final score: point 0 with p_cls 0.9 but p_ctr 0.03
    (score 0.16 < 0.2) is dropped, point 5 with p_cls 0.3 and p_ctr 0.95 (0.53) is kept."""
    model = build("configs/common/models/fcos.py")
    model.eval()
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    cls = torch.full((16, K), -9.0)
    ctr = torch.full((16, 1), -9.0)
    cls[0, 1], ctr[0, 0] = logit(0.9), logit(0.03)
    cls[5, 0], ctr[5, 0] = logit(0.3), logit(0.95)
    ltrb = torch.full((16, 4), 0.5)
    images = type("Images", (), {"image_sizes": [(32, 32)]})()
    with torch.no_grad():
        out = model.forward_inference(
            images, [torch.zeros(1, 1, 4, 4)], fcos_predictions(cls, ltrb, ctr)
        )[0]
    assert math.sqrt(0.9 * 0.03) < 0.2 < math.sqrt(0.3 * 0.95)
    got = (out.pred_boxes.tensor, out.scores, out.pred_classes)
    golden.assert_detections(got, [([8.0, 8.0, 16.0, 16.0], math.sqrt(0.3 * 0.95), 0)])
