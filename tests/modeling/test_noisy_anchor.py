"""Noisy Anchors (Li et al., CVPR 2020): the cleanliness assigner on hand-computed cases, the
losses, and the RetinaNet and Faster R-CNN (RPN) variants end to end."""

import math
import os
from types import SimpleNamespace

import pytest
import torch

from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.utils.events import EventStorage

from semianchor.config import add_semianchor_config
from semianchor.modeling.assigners import AssignInputs, CleanlinessAssigner
from semianchor.modeling.assigners.build import build_assigner
from semianchor.modeling.assigners.cleanliness import (
    normalize_to_unit_mean,
    reweighting_factors,
    safe_inverse_complement,
    topn_iou_assignment,
)
from semianchor.modeling.meta_arch import AssignmentDetector, NoisyAnchorRetinaNet
from semianchor.modeling.meta_arch.noisy_anchor import (
    cleanliness_focal_loss,
    retinanet_matched_count,
)
from semianchor.modeling.proposal_generator import NoisyAnchorRPN

from .conftest import (
    NUM_CLASSES,
    REPO,
    build_lazy,
    make_batch,
    one_level_inputs,
    sgd_loss_history,
    shrink_lazy_model,
    shrink_yacs,
)

K = 3  # classes of the hand cases
LAZY = "configs/COCO-Detection/noisy_anchor_retinanet_R_50_FPN_1x.py"
YACS = "configs/yacs/NoisyAnchor_RetinaNet_R_50_FPN_1x.yaml"
LAZY_RCNN = "configs/COCO-Detection/noisy_anchor_faster_rcnn_R_50_FPN_1x.py"
YACS_RCNN = "configs/yacs/NoisyAnchor_FasterRCNN_R_50_FPN_1x.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/modeling/conftest.py


# Four hand anchors: a0 = [0,0,10,10] (area 100), a1 = [0,0,10,20] (200), a2 = [0,0,20,20] (400),
# a3 = [30,30,40,40] (far from everything).
ANCHORS = torch.tensor(
    [[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 20, 20], [30, 30, 40, 40]], dtype=torch.float32
)


def hand_inputs(gts, classes, scores=None, regression=None):
    """gts / classes: per-image lists; scores: (N, 4, K) probabilities (default 0.5 everywhere);
    regression: (N, 4, 4) deltas (default 0: the regressed box is the anchor)."""
    N = len(gts)
    M = max([len(g) for g in gts] + [1])
    boxes = torch.zeros(N, M, 4)
    cls = torch.zeros(N, M, dtype=torch.long)
    for i, (g, c) in enumerate(zip(gts, classes)):
        if g:
            boxes[i, : len(g)] = torch.tensor(g, dtype=torch.float32)
            cls[i, : len(g)] = torch.tensor(c)
    R = ANCHORS.shape[0]
    return one_level_inputs(
        ANCHORS,
        boxes,
        cls,
        torch.tensor([len(g) for g in gts]),
        K,
        pred_scores=torch.full((N, R, K), 0.5) if scores is None else scores,
        pred_regression=torch.zeros(N, R, 4) if regression is None else regression,
    )


def two_image_case():
    """Image 0: GT [0,0,10,10] class 1. IoU (before regression) with a0..a3: 1, 100/200 = 0.5,
    100/400 = 0.25, 0 -> top-2 = {a0, a1}. cls_c: a0 0.5, a1 0.9.
    Image 1: GT [0,0,20,20] class 0. IoU: 0.25, 0.5, 1, 0 -> top-2 = {a2, a1}. cls_c: a2 1.0
    (a saturated sigmoid), a1 0.0. Zero regression: loc_a = IoU before regression."""
    scores = torch.full((2, 4, K), 0.3)
    scores[0, 0, 1], scores[0, 1, 1] = 0.5, 0.9
    scores[1, 2, 0], scores[1, 1, 0] = 1.0, 0.0
    return hand_inputs([[[0, 0, 10, 10]], [[0, 0, 20, 20]]], [[1], [0]], scores=scores)


# ---------------------------------------------------------------- assigner: hand cases
def test_cleanliness_and_weights_hand_computed():
    res = CleanlinessAssigner(topn=2, alpha=0.75, gamma=1.0, eps=0.01)(two_image_case())
    assert res.matched_gt.tolist() == [[0, 0, -1, -1], [-1, 0, 0, -1]]
    assert res.labels.tolist() == [[1, 1, K, K], [K, 0, 0, K]]
    # loc_a: a0 = 1 (img 0), a1 = 0.5 (both images), a2 = 1 (img 1)
    torch.testing.assert_close(
        res.extras["loc_a"], torch.tensor([[1.0, 0.5, 0, 0], [0, 0.5, 1.0, 0]])
    )
    # c = 0.75 * loc_a + 0.25 * cls_c (Eq. 3, alpha on loc_a):
    #   img 0: a0 0.75 + 0.125 = 0.875, a1 0.375 + 0.225 = 0.6
    #   img 1: a2 0.75 + 0.25 = 1.0 (loc_a = cls_c = 1), a1 0.375 + 0 = 0.375
    expected_c = torch.tensor([[0.875, 0.6, 0, 0], [0, 0.375, 1.0, 0]])
    torch.testing.assert_close(res.soft_targets, expected_c)
    # r = 0.75 f(loc_a) + 0.25 f(cls_c), f(x) = 1 / (1 - min(x, 0.99)): f(1) = 100, f(0.9) = 10,
    # f(0.5) = 2, f(0) = 1 -> raw: 75.5, 4.0 (img 0); 1.75, 100 (img 1), sum 181.25 over the 4
    # positives of the batch, mean 45.3125 -> r = raw / 45.3125.
    raw = torch.tensor([[75.5, 4.0, 0, 0], [0, 1.75, 100.0, 0]])
    expected_r = torch.where(raw > 0, raw / 45.3125, torch.ones_like(raw))  # A_neg: r = 1
    torch.testing.assert_close(res.weights, expected_r)
    pos = res.matched_gt >= 0
    assert res.weights[pos].mean().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.isfinite(res.weights).all()


def test_loc_a_is_iou_after_regression():
    # a1 = [0,0,10,20] regressed by (0, -0.25, 0, log 0.5): centre y 10 - 0.25 * 20 = 5, height
    # 10 -> [0,0,10,10] = the GT: loc_a = 1, although its IoU before regression is 0.5.
    reg = torch.zeros(1, 4, 4)
    reg[0, 1] = torch.tensor([0.0, -0.25, 0.0, math.log(0.5)])
    inputs = hand_inputs([[[0, 0, 10, 10]]], [[2]], regression=reg)
    res = CleanlinessAssigner(topn=2)(inputs)
    assert res.extras["iou"][0, 1].item() == pytest.approx(0.5)
    assert res.extras["loc_a"][0, 1].item() == pytest.approx(1.0, abs=1e-6)
    # cls_c = 0.5 (default scores): c = 0.75 * 1 + 0.25 * 0.5 = 0.875 for a0 and a1 alike
    torch.testing.assert_close(res.soft_targets[0, :2], torch.tensor([0.875, 0.875]))


def test_f_is_finite_at_one():
    x = torch.tensor([0.0, 0.5, 0.99, 1.0, 1.5, -0.2])
    torch.testing.assert_close(
        safe_inverse_complement(x, 0.01), torch.tensor([1.0, 2.0, 100.0, 100.0, 100.0, 1.0])
    )
    # loc_a = cls_c = 1: r = f(1) = 100 (not inf); gamma = 2 squares it
    one = torch.ones(1)
    assert reweighting_factors(one, one, 0.75, 2.0, 0.01).item() == pytest.approx(1e4, rel=1e-5)


def test_normalisation_to_mean_one():
    r = torch.tensor([[2.0, 6.0, 5.0], [4.0, 7.0, 9.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = normalize_to_unit_mean(r, mask)
    # mean over the 3 positives = 4 -> 0.5, 1.5, 1.0; 1 elsewhere
    torch.testing.assert_close(out, torch.tensor([[0.5, 1.5, 1.0], [1.0, 1.0, 1.0]]))
    assert out[mask].mean().item() == pytest.approx(1.0)
    assert torch.equal(normalize_to_unit_mean(r, torch.zeros_like(mask)), torch.ones_like(r))


def test_conflicting_gts_go_to_highest_iou():
    # GT A = [0,0,10,10]: IoU 1, 0.5, 0.25, 0 -> top-2 {a0, a1}.
    # GT B = [0,0,10,20]: IoU 0.5, 1, 200/400 = 0.5, 0 -> a1, then a0/a2 tie at 0.5 -> lowest
    # anchor index a0: top-2 {a1, a0}. a0: A (1.0) beats B (0.5); a1: B (1.0) beats A (0.5).
    for order in ([[0, 0, 10, 10], [0, 0, 10, 20]], [[0, 0, 10, 20], [0, 0, 10, 10]]):
        inputs = hand_inputs([order], [[0, 2]])
        res = CleanlinessAssigner(topn=2)(inputs)
        a, b = order.index([0, 0, 10, 10]), order.index([0, 0, 10, 20])
        assert res.matched_gt[0].tolist() == [a, b, -1, -1]
        assert res.labels[0].tolist() == [[0, 2][a], [0, 2][b], K, K]


def test_duplicate_gts_tie_to_lowest_index_and_zero_iou_never_positive():
    matched, iou = topn_iou_assignment(
        ANCHORS, torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 10]]]), torch.tensor([2]), 4
    )
    # top-4 of a GT would include a3, but its IoU is 0: never a positive
    assert matched[0].tolist() == [0, 0, 0, -1]
    torch.testing.assert_close(iou[0], torch.tensor([1.0, 0.5, 0.25, 0.0]))
    # a zero-area GT and a GT far from every anchor get no positive
    matched, _ = topn_iou_assignment(
        ANCHORS, torch.tensor([[[5.0, 5, 5, 9], [100, 100, 110, 110]]]), torch.tensor([2]), 3
    )
    assert (matched == -1).all()


def test_empty_gt_image():
    inputs = hand_inputs([[], [[0, 0, 10, 10]]], [[], [1]])
    res = CleanlinessAssigner(topn=2)(inputs)
    assert (res.labels[0] == K).all() and (res.matched_gt[0] == -1).all()
    assert (res.soft_targets[0] == 0).all() and (res.weights[0] == 1).all()
    assert res.matched_gt[1].tolist() == [0, 0, -1, -1]
    # all images empty: no positive, no division by zero
    res = CleanlinessAssigner(topn=2)(hand_inputs([[], []], [[], []]))
    assert (res.labels == K).all() and torch.equal(res.weights, torch.ones(2, 4))
    assert (res.soft_targets == 0).all()


def test_non_finite_predictions_give_finite_targets():
    inputs = two_image_case()
    inputs.pred_regression[0, 0] = float("nan")
    inputs.pred_scores[0, 1, 1] = float("nan")
    res = CleanlinessAssigner(topn=2)(inputs)
    assert torch.isfinite(res.soft_targets).all() and torch.isfinite(res.weights).all()
    # a0: non-finite box -> loc_a 0, c = 0.25 * 0.5; a1: NaN score -> cls_c 0, c = 0.75 * 0.5
    assert res.soft_targets[0, 0].item() == pytest.approx(0.125)
    assert res.soft_targets[0, 1].item() == pytest.approx(0.375)


def test_predictions_enter_detached():
    inputs = two_image_case()
    inputs.pred_scores.requires_grad_(True)
    inputs.pred_regression.requires_grad_(True)
    res = CleanlinessAssigner(topn=2)(inputs)
    assert not res.soft_targets.requires_grad and not res.weights.requires_grad


def test_ablation_switches():
    inputs = two_image_case()
    full = CleanlinessAssigner(topn=2)(inputs)
    sl = CleanlinessAssigner(topn=2, reweight=False)(inputs)  # Table 3 row "SL"
    sr = CleanlinessAssigner(topn=2, soft_labels=False)(inputs)  # Table 3 row "SR"
    none = CleanlinessAssigner(topn=2, soft_labels=False, reweight=False)  # binary top-N
    assert sl.weights is None and torch.equal(sl.soft_targets, full.soft_targets)
    assert sr.soft_targets is None and torch.equal(sr.weights, full.weights)
    assert none.requires_predictions is False
    inputs.pred_scores, inputs.pred_regression = None, None  # the static rule needs no predictions
    res = none(inputs)
    assert res.soft_targets is None and res.weights is None
    assert torch.equal(res.labels, full.labels)
    with pytest.raises(ValueError, match="needs pred_scores"):
        CleanlinessAssigner(topn=2)(inputs)


def _class_targets(result):
    return AssignmentDetector.classification_targets(SimpleNamespace(num_classes=K), result)


def test_removing_the_dynamic_terms_gives_binary_top_n():
    binary_targets, _ = _class_targets(
        CleanlinessAssigner(topn=2, soft_labels=False, reweight=False)(two_image_case())
    )
    # alpha = 1 keeps only loc_a; a regression onto the matched GT makes it 1 for every positive;
    # gamma = 0 makes r = 1. Image 0: a0 = GT already (deltas 0), a1 = [0,0,10,20] -> [0,0,10,10]
    # as above. Image 1: a2 = GT; a1 -> [0,0,20,20]: dx = 0.5, dy = 0, dw = log 2, dh = 0.
    reg = torch.zeros(2, 4, 4)
    reg[0, 1] = torch.tensor([0.0, -0.25, 0.0, math.log(0.5)])
    reg[1, 1] = torch.tensor([0.5, 0.0, math.log(2.0), 0.0])
    inputs = two_image_case()
    inputs.pred_regression = reg
    res = CleanlinessAssigner(topn=2, alpha=1.0, gamma=0.0)(inputs)
    targets, valid = _class_targets(res)
    assert valid.all()  # no ignored anchor: A_neg is everything else (Algorithm 1, line 6)
    torch.testing.assert_close(targets, binary_targets, atol=1e-6, rtol=0)
    assert torch.equal(res.weights, torch.ones(2, 4))
    # alpha = 0 keeps only cls_c: a classifier certain of the GT class gives the same
    inputs = two_image_case()
    inputs.pred_scores = torch.ones(2, 4, K)
    targets, _ = _class_targets(CleanlinessAssigner(topn=2, alpha=0.0, gamma=0.0)(inputs))
    torch.testing.assert_close(targets, binary_targets)


def test_bad_arguments_raise():
    for kw in ({"topn": 0}, {"alpha": 1.5}, {"gamma": -1.0}, {"eps": 0.0}):
        with pytest.raises(ValueError):
            CleanlinessAssigner(**kw)


def test_yacs_builder():
    cfg = add_semianchor_config(get_cfg())
    cfg.MODEL.SEMIANCHOR.ASSIGNER.NAME = "Cleanliness"
    cfg.MODEL.SEMIANCHOR.NOISY.TOPN = 30
    cfg.MODEL.SEMIANCHOR.NOISY.REWEIGHT = False
    a = build_assigner(cfg)
    assert (
        isinstance(a, CleanlinessAssigner) and a.topn == 30 and not a.reweight and a.alpha == 0.75
    )


# ---------------------------------------------------------------- losses
def test_cleanliness_focal_loss_hand_computed():
    # p = 0.5, c = 0.6, alpha 0.25, gamma 2 (Eq. 1 with t -> c):
    # 0.6 * 0.25 * 0.5^2 * log 2 + 0.4 * 0.75 * 0.5^2 * log 2 = (0.0375 + 0.075) * 0.693147
    loss = cleanliness_focal_loss(torch.zeros(1), torch.tensor([0.6]), 0.25, 2.0)
    assert loss.item() == pytest.approx(0.1125 * math.log(2), rel=1e-6)
    # binary targets: exactly RetinaNet's focal loss
    from fvcore.nn import sigmoid_focal_loss

    logits = torch.randn(50, 3, generator=torch.Generator().manual_seed(0)) * 3
    t = (torch.rand(50, 3, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    torch.testing.assert_close(
        cleanliness_focal_loss(logits, t), sigmoid_focal_loss(logits, t, 0.25, 2.0)
    )
    # alpha < 0, gamma 0: soft BCE
    torch.testing.assert_close(
        cleanliness_focal_loss(logits, t * 0.7, -1.0, 0.0),
        torch.nn.functional.binary_cross_entropy_with_logits(logits, t * 0.7, reduction="none"),
    )


@pytest.fixture(scope="module")
def tiny_retinanet():
    return build_lazy(LAZY)


def test_detector_losses_weight_positives_by_r(tiny_retinanet):
    """Eq. 5-6 on the hand case: cls = [sum r FL(p, c) + sum_neg FL(p, 0)] / P,
    box = sum r smooth_l1 / P, with P = 4 positives (normaliser EMA with momentum 0)."""
    model = tiny_retinanet
    model.loss_normalizer_momentum = 0.0
    inputs = two_image_case()
    inputs.box_coder = model.box_coder
    g = torch.Generator().manual_seed(0)
    preds = {
        "cls": torch.randn(2, 4, K, generator=g),
        "reg": torch.randn(2, 4, 4, generator=g) * 0.1,
    }
    model.num_classes = K
    try:
        for kw in ({}, {"reweight": False}, {"soft_labels": False}):
            res = CleanlinessAssigner(topn=2, **kw)(inputs)
            losses = model.losses(inputs, preds, res)
            pos = res.matched_gt >= 0
            c = res.soft_targets if res.soft_targets is not None else torch.ones(2, 4)
            t = (
                torch.nn.functional.one_hot(res.labels.clamp(max=K - 1), K).float()
                * (c * pos)[..., None]
            )
            r = res.weights if res.weights is not None else torch.ones(2, 4)
            fl = cleanliness_focal_loss(preds["cls"], t, 0.25, 2.0).sum(-1)
            assert losses["loss_noisy_cls"].item() == pytest.approx(
                float((fl * r).sum() / 4), rel=1e-5
            )
            gt = res.matched_boxes(inputs.gt_boxes)
            target = model.box_coder.encode(ANCHORS.expand(2, -1, -1), gt, inputs.anchor_strides)
            diff = (preds["reg"] - target).abs()
            sl1 = torch.where(diff < 0.1, 0.5 * diff**2 / 0.1, diff - 0.05).sum(-1)
            assert losses["loss_noisy_box"].item() == pytest.approx(
                float((sl1 * r)[pos].sum() / 4), rel=1e-5
            )
    finally:
        model.num_classes = NUM_CLASSES


# ---------------------------------------------------------------- RetinaNet end to end
def yacs_build(rel_path):
    from detectron2.modeling import build_model

    cfg = add_semianchor_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, rel_path))
    shrink_yacs(cfg)
    torch.manual_seed(0)
    return build_model(cfg)


def test_retinanet_lazy_and_yacs_builds_agree(tiny_retinanet):
    yacs = yacs_build(YACS)
    assert isinstance(yacs, NoisyAnchorRetinaNet) and isinstance(yacs.assigner, CleanlinessAssigner)
    assert repr(yacs.assigner) == repr(tiny_retinanet.assigner)
    assert yacs.anchor_generator.num_cell_anchors == [9] * 5
    assert yacs.smooth_l1_beta == tiny_retinanet.smooth_l1_beta == 0.1
    assert yacs.test_nms_thresh == tiny_retinanet.test_nms_thresh == 0.5


def test_retinanet_losses_fall_when_overfitting_one_batch():
    cfg = LazyConfig.load(os.path.join(REPO, LAZY))
    torch.manual_seed(0)
    model = instantiate(shrink_lazy_model(cfg.model))
    model.loss_normalizer_momentum = 0.0
    history = sgd_loss_history(model, make_batch(2, size=64, seed=3), steps=10)
    assert history[-1] < history[0] * 0.9, history


def test_retinanet_inference_output_format(tiny_retinanet):
    model = tiny_retinanet
    model.eval()
    thresh, model.test_score_thresh = model.test_score_thresh, 0.0
    try:
        with torch.no_grad():
            out = model(make_batch(2, size=80))
    finally:
        model.test_score_thresh = thresh
    for r in out:
        inst = r["instances"]
        assert inst.image_size == (80, 80) and 0 < len(inst) <= model.max_detections_per_image
        assert inst.pred_classes.max() < NUM_CLASSES
        assert torch.isfinite(inst.pred_boxes.tensor).all()
        assert (inst.scores >= 0).all() and (inst.scores <= 1).all()


def test_quickstart_config_differs_from_retinanet_baseline_only_by_the_model():
    noisy = LazyConfig.load(
        os.path.join(REPO, "configs/quickstart/noisy_anchor_retinanet_R18_shapes.py")
    )
    base = LazyConfig.load(os.path.join(REPO, "configs/quickstart/retinanet_R18_shapes.py"))
    for key in ("dataloader", "optimizer", "lr_multiplier"):
        assert LazyConfig.to_py(noisy[key]) == LazyConfig.to_py(base[key]), key
    assert {k: v for k, v in noisy.train.items() if k != "output_dir"} == {
        k: v for k, v in base.train.items() if k != "output_dir"
    }
    assert noisy.model.backbone.top_block.pop("in_feature") == "res5"  # explicit; the default
    for key in (
        "anchor_generator",
        "backbone",
        "num_classes",
        "pixel_mean",
        "pixel_std",
        "head_in_features",
    ):
        assert str(noisy.model[key]) == str(base.model[key]), key
    # same head towers (GroupNorm in both quickstart heads), same prior
    for key in ("conv_dims", "norm", "prior_prob", "num_anchors"):
        assert str(noisy.model.head[key]) == str(base.model.head[key]), key
    assert base.model.head.norm == "GN"


# ---------------------------------------------------------------- Faster R-CNN (RPN) end to end
@pytest.fixture(scope="module")
def tiny_rcnn():
    return build_lazy(LAZY_RCNN)


def test_rcnn_lazy_and_yacs_builds_agree(tiny_rcnn):
    yacs = yacs_build(YACS_RCNN)
    for m in (tiny_rcnn, yacs):
        assert isinstance(m.proposal_generator, NoisyAnchorRPN)
        assert isinstance(m.proposal_generator.assigner, CleanlinessAssigner)
    assert repr(yacs.proposal_generator.assigner) == repr(tiny_rcnn.proposal_generator.assigner)


def test_rpn_losses_are_soft_bce_and_l1_weighted_by_r(tiny_rcnn, monkeypatch):
    """Without sampling (identity sampler), the RPN losses must be exactly
    cls = sum_R r * BCE(p, c) / (256 N) and loc = sum_{A_pos} r * L1 / (256 N) (smooth-L1 beta 0),
    with c and r from the assigner run on the RPN's own objectness and deltas."""
    rpn = tiny_rcnn.proposal_generator
    rpn.train()
    monkeypatch.setattr(rpn, "_subsample_labels", lambda label: label)
    batch = make_batch(2, size=64, seed=5)
    images = tiny_rcnn.preprocess_image(batch)
    gt = [x["instances"] for x in batch]
    with torch.no_grad(), EventStorage():
        feats = tiny_rcnn.backbone(images.tensor)
        _, losses = rpn(images, feats, gt)
        feats = [feats[f] for f in rpn.in_features]
        anchors = rpn.anchor_generator(feats)
        logits, deltas = rpn.rpn_head(feats)
    logits = torch.cat([x.permute(0, 2, 3, 1).flatten(1) for x in logits], 1)  # (N, R), A = 3
    deltas = torch.cat(
        [x.view(2, 3, 4, *x.shape[-2:]).permute(0, 3, 4, 1, 2).flatten(1, -2) for x in deltas], 1
    )
    from detectron2.structures import Boxes

    from semianchor.modeling.assigners import pad_gt_instances

    all_anchors = Boxes.cat(anchors).tensor
    boxes, classes, counts = pad_gt_instances(gt)
    R = all_anchors.shape[0]
    inputs = AssignInputs(
        anchors=all_anchors,
        num_anchors_per_level=[len(a) for a in anchors],
        anchor_strides=torch.ones(R),
        anchors_per_location=3,
        gt_boxes=boxes,
        gt_classes=torch.zeros_like(classes),
        gt_counts=counts,
        num_classes=1,
        pred_scores=torch.sigmoid(logits)[..., None],
        pred_regression=deltas,
        box_coder=rpn.box_coder,
    )
    res = rpn.assigner(inputs)
    pos = res.labels == 0
    assert int(pos.sum()) > 0
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, res.soft_targets, reduction="none"
    )
    expected_cls = (bce * res.weights).sum() / (256 * 2)
    assert losses["loss_rpn_cls"].item() == pytest.approx(expected_cls.item(), rel=1e-4)
    target = rpn.box_coder.encode(
        all_anchors.expand(2, -1, -1), res.matched_boxes(boxes), inputs.anchor_strides
    )
    l1 = (deltas - target).abs().sum(-1)
    expected_loc = (l1 * res.weights)[pos].sum() / (256 * 2)
    assert losses["loss_rpn_loc"].item() == pytest.approx(expected_loc.item(), rel=1e-4)


def test_rcnn_inference_output_format(tiny_rcnn):
    model = tiny_rcnn
    model.eval()
    with torch.no_grad():
        out = model(make_batch(2, size=80))
    for r in out:
        inst = r["instances"]
        assert inst.image_size == (80, 80)
        assert len(inst) <= 100 and torch.isfinite(inst.pred_boxes.tensor).all()


def _independent_retinanet_positives(inputs):
    """RetinaNet's {0.4, 0.5} matcher written out: IoU >= 0.5, or among a GT's highest-IoU
    anchors (ties included, as Detectron2's low-quality matches)."""
    from detectron2.structures import Boxes, pairwise_iou

    total = 0
    for n in range(inputs.gt_boxes.shape[0]):
        m = int(inputs.gt_counts[n])
        if not m:
            continue
        # the same float32 IoU as the detector (ties decide low-quality matches)
        iou = pairwise_iou(Boxes(inputs.gt_boxes[n, :m].float()), Boxes(inputs.anchors.float()))
        pos = iou.max(dim=0).values >= 0.5
        pos |= (iou == iou.max(dim=1, keepdim=True).values).any(dim=0)
        total += int(pos.sum())
    return total


def _losses_with(model, normalizer, batch):
    """Losses of one step with ``normalizer`` and the batch's own (un-averaged) normaliser value."""
    seen = {}
    ema = model.ema_normalizer
    losses_fn = model.losses

    def record(value, name="loss_normalizer"):
        seen[name] = value
        return ema(value, name)

    def capture(inputs, preds, result):
        seen["inputs"], seen["result"] = inputs, result
        return losses_fn(inputs, preds, result)

    model.normalizer_type, model.loss_normalizer_momentum = normalizer, 0.0
    model.ema_normalizer, model.losses = record, capture
    try:
        torch.manual_seed(0)
        with EventStorage() as storage:
            losses = model(batch)
            seen["logged"] = {k: v for k, (v, _) in storage.latest().items() if "normalizer" in k}
    finally:
        del model.ema_normalizer, model.losses
        model.normalizer_type = "positives"
    return losses, seen


def test_loss_normalizer_choices(tiny_retinanet):
    """positives = |A_pos|, soft_targets = sum c over A_pos, retinanet_matched = RetinaNet's
    positive count; the un-normalised sums are the same, only the divisor changes."""
    model = tiny_retinanet
    model.train()
    batch = make_batch(2)
    base, seen = _losses_with(model, "positives", batch)
    result = seen["result"]["anchors"]
    pos = result.positive_mask(model.num_classes)
    assert seen["loss_normalizer"] == float(pos.sum()) > 0
    soft, seen_soft = _losses_with(model, "soft_targets", batch)
    expected_soft = float(result.soft_targets[pos].float().sum())
    assert seen_soft["loss_normalizer"] == pytest.approx(expected_soft)
    assert 0 < expected_soft < float(pos.sum())
    matched, seen_matched = _losses_with(model, "retinanet_matched", batch)
    assert seen_matched["loss_normalizer"] == _independent_retinanet_positives(seen["inputs"])
    for s in (seen, seen_soft, seen_matched):  # the divisor is in the log (momentum 0: = value)
        assert s["logged"]["noisy/loss_normalizer"] == pytest.approx(s["loss_normalizer"])
    for key in ("loss_noisy_cls", "loss_noisy_box"):
        unnormalised = float(base[key]) * seen["loss_normalizer"]
        assert float(soft[key]) * seen_soft["loss_normalizer"] == pytest.approx(unnormalised, 1e-4)
        assert float(matched[key]) * seen_matched["loss_normalizer"] == pytest.approx(
            unnormalised, 1e-4
        )


def test_retinanet_matched_normalizer_takes_the_inputs_as_an_argument(tiny_retinanet):
    """The count is taken on the inputs the losses pass: none of the step is kept on the model."""
    model = tiny_retinanet
    model.train()
    _, seen = _losses_with(model, "retinanet_matched", make_batch(2))
    assert not any(isinstance(v, AssignInputs) for v in vars(model).values())
    model.normalizer_type, model._step_normalizers = "retinanet_matched", {}
    try:
        words = (
            r"^normalizer_type='retinanet_matched' counts on the step's anchors and GTs: pass the "
            r"assigner inputs \(positives_normalizer\(\.\.\., inputs=\.\.\.\)\)$"
        )
        with pytest.raises(ValueError, match=words):
            model.positives_normalizer(seen["result"])
        value = model.positives_normalizer(seen["result"], inputs=seen["inputs"])
        assert value == max(float(_independent_retinanet_positives(seen["inputs"])), 1.0)
    finally:
        model.normalizer_type = "positives"


@pytest.mark.parametrize("per_image", [False, True], ids=["shared_anchors", "per_image_anchors"])
def test_retinanet_matched_count_hand_case(per_image):
    """RetinaNet's matcher (IoU >= 0.5, plus each GT's best anchors) per image, summed. Image 0
    has no GT; image 1 GT [0,0,10,10]: a0 (IoU 1), a1 (0.5) -> 2; image 2 GTs [0,0,20,20] and
    [30,30,42,42]: a1 (0.5), a2 (1), a3 (100/144) -> 3. With per-image anchors image 2's are
    shifted by (10, 10): the best IoUs are a0's 0.25 (GT 0) and a3's 4/240 (GT 1), low-quality
    matches -> 2."""
    gts = [[], [[0, 0, 10, 10]], [[0, 0, 20, 20], [30, 30, 42, 42]]]
    inputs = hand_inputs(gts, [[], [0], [0, 1]])
    if per_image:
        inputs.anchors = torch.stack([ANCHORS, ANCHORS, ANCHORS + 10.0])
    assert inputs.per_image_anchors == per_image
    assert retinanet_matched_count(inputs) == (2 + 2 if per_image else 2 + 3)


def test_unknown_loss_normalizer_is_an_error():
    cfg = LazyConfig.load(os.path.join(REPO, LAZY))
    cfg.model.normalizer_type = "images"
    with pytest.raises(ValueError, match="normalizer_type must be one of"):
        instantiate(shrink_lazy_model(cfg.model))
