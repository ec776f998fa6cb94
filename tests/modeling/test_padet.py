"""PADet: SSD priors with 6 and 4 anchors per level, the encoder-decoder layouts (and MSRA ImageNet
weights for the ResNet encoder), the two matchings (promoted anchors, the theta rule), the FAM's
deformable conv, hard-negative mining, the detector end to end (empty GT, autocast), Table 2's
APM components and the ablation configs of projects/PADet/configs."""

import dataclasses
import glob
import math
import os
import pickle

import pytest
import torch
import torch.nn.functional as F
import torchvision

from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec
from detectron2.utils.events import EventStorage

from semianchor.modeling.anchors import SSDAnchorGenerator, ssd_sizes
from semianchor.modeling.assigners import MaxIoUAssigner, StagedAssigner
from semianchor.modeling.assigners.padet import PromotedAnchorAssigner, promoted_anchors
from semianchor.modeling.backbone.encoder_decoder import EncoderDecoder, ResNetEncoder, VGG16Encoder
from semianchor.modeling.box_coder import LTRBBoxCoder
from semianchor.modeling.heads.padet_head import FeatureAlignment, PADetHead
from semianchor.modeling.meta_arch.padet import PADet

from .conftest import REPO, make_batch, one_level_inputs

K = 3


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/modeling/conftest.py


# ---------------------------------------------------------------- anchors and layouts
def test_ssd_priors_384_layout_gives_18400_anchors_in_detectron2_order():
    mins, maxs = ssd_sizes(384, [0.07, 0.15, 0.33, 0.51, 0.69, 0.87])
    gen = SSDAnchorGenerator(
        min_sizes=mins,
        max_sizes=maxs,
        aspect_ratios=[[1.0, 2.0, 3.0, 0.5, 1 / 3]] * 4 + [[1.0, 2.0, 0.5]] * 2,
        strides=[8, 16, 32, 64, 128, 384],
    )
    assert gen.num_cell_anchors == [6, 6, 6, 6, 4, 4]
    feats = [torch.zeros(1, 1, s, s) for s in (48, 24, 12, 6, 3, 1)]
    anchors = gen(feats)
    assert sum(len(a) for a in anchors) == 18400  # the paper's count at 384
    cells = list(gen.cell_anchors)
    wh = cells[0][:, 2:] - cells[0][:, :2]
    assert wh[0].tolist() == pytest.approx([mins[0], mins[0]])  # ratio 1
    extra = math.sqrt(mins[0] * maxs[0])
    assert wh[1].tolist() == pytest.approx([extra, extra])  # SSD's extra square right after it
    assert (wh[2, 0] / wh[2, 1]).item() == pytest.approx(2.0, rel=1e-5)
    # location-major, A_l contiguous, centres at (i + 0.5) * stride
    a0 = anchors[0].tensor
    centres = (a0[:, :2] + a0[:, 2:]) / 2
    assert torch.allclose(centres[:6], torch.tensor([[4.0, 4.0]] * 6), atol=1e-4)
    assert torch.allclose(centres[6], torch.tensor([12.0, 4.0]), atol=1e-4)
    assert torch.allclose(centres[48 * 6], torch.tensor([4.0, 12.0]), atol=1e-4)
    with pytest.raises(ValueError, match="one min/max size"):
        SSDAnchorGenerator(min_sizes=[1], max_sizes=[2], aspect_ratios=[[1.0]], strides=[8, 16])


@pytest.mark.parametrize(
    "encoder, size, sides",
    [
        (lambda: VGG16Encoder(width=0.125, num_extra=3), 384, [48, 24, 12, 6, 3, 1]),
        (lambda: VGG16Encoder(width=0.125, num_extra=4), 512, [64, 32, 16, 8, 4, 2, 1]),
        (lambda: ResNetEncoder(depth=18, num_extra=2, width=0.125), 384, [48, 24, 12, 6, 3, 1]),
    ],
)
def test_encoder_decoder_layouts(encoder, size, sides):
    model = EncoderDecoder(encoder=encoder(), channels=16)
    out = model(torch.zeros(1, 3, size, size))
    assert [v.shape[-1] for v in out.values()] == sides
    assert all(v.shape[1] == 16 for v in out.values())
    shapes = model.output_shape()
    assert [shapes[k].stride for k in out] == list(encoder().strides) + [encoder().strides[-1] * 2]


# ---------------------------------------------------------------- matchings
def _inputs(anchors, gts, apm_deltas, apm_scores):
    return one_level_inputs(
        anchors,
        gts[None],
        torch.zeros(1, gts.shape[0], dtype=torch.long),
        torch.tensor([gts.shape[0]]),
        K,
        extras={"apm_regression": apm_deltas[None], "apm_scores": apm_scores[None]},
    )


def _staged(theta=0.01, promote=True):
    return StagedAssigner(
        stages=[
            ("initial", MaxIoUAssigner(thresholds=(0.3, 0.5), labels=(0, -1, 1))),
            ("promoted", PromotedAnchorAssigner(promote=promote, theta=theta)),
        ]
    )


def test_the_theta_rule_needs_the_apm_scores():
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    inputs = _inputs(gt, gt, torch.zeros(1, 4), torch.ones(1))
    del inputs.extras["apm_scores"]
    message = r"^the theta rule needs inputs.extras\['apm_scores'\] \(N, R\)$"
    with pytest.raises(ValueError, match=message):
        _staged()(inputs)


@pytest.mark.parametrize("missing", ["apm_regression", "box_coder"])
def test_promoted_anchors_need_the_apm_deltas_and_a_box_coder(missing):
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    inputs = _inputs(gt, gt, torch.zeros(1, 4), torch.ones(1))
    if missing == "box_coder":
        inputs = dataclasses.replace(inputs, box_coder=None)
    else:
        del inputs.extras["apm_regression"]
    message = r"^promoted anchors need inputs.extras\['apm_regression'\] and a box_coder$"
    with pytest.raises(ValueError, match=message):
        promoted_anchors(inputs)


def test_promoted_anchors_decode_each_anchor_in_its_stride_units():
    """LTRBBoxCoder, stride 8: deltas (1, 1, 1, 1) put anchor 0's box 8 px around its centre
    (10, 10); anchor 1's NaN deltas leave it (alone) where it was. The promoted stage's inputs
    carry their own copy of the extras."""
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    anchors = torch.tensor([[0.0, 0.0, 20.0, 20.0], [40.0, 40.0, 60.0, 60.0]])
    deltas = torch.tensor([[1.0, 1.0, 1.0, 1.0], [float("nan")] * 4])
    inputs = dataclasses.replace(
        _inputs(anchors, gt, deltas, torch.ones(2)), box_coder=LTRBBoxCoder()
    )
    expected = torch.tensor([[[2.0, 2.0, 18.0, 18.0], [40.0, 40.0, 60.0, 60.0]]])
    torch.testing.assert_close(promoted_anchors(inputs), expected)
    stage_in = PromotedAnchorAssigner().stage_inputs(inputs, {})
    torch.testing.assert_close(stage_in.anchors, expected)
    stage_in.extras["apm_scores"] = None  # a later edit stays in the promoted stage's inputs
    assert inputs.extras["apm_scores"] is not None


@pytest.mark.parametrize(
    "kwargs, labels",
    [
        ({}, [0, K]),
        ({"allow_low_quality_matches": False}, [-1, K]),
        ({"allow_low_quality_matches": False, "labels": (0, 0, 1)}, [K, K]),
    ],
    ids=["default", "no_low_quality", "no_band"],
)
def test_the_promoted_matching_rule(kwargs, labels):
    """GT [0, 0, 20, 20]: anchor 0's IoU 0.4 is in the ignored [0.3, 0.5) band, but it is the GT's
    best anchor (a low-quality positive by default, SSD's "best anchor per GT"); anchor 1's IoU 0.2
    is background. ``labels`` (0, 0, 1) makes the band background."""
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    anchors = torch.tensor([[0.0, 0.0, 20.0, 50.0], [0.0, 0.0, 20.0, 100.0]])
    inputs = _inputs(anchors, gt, torch.zeros(2, 4), torch.ones(2))
    result = PromotedAnchorAssigner(**kwargs, promote=False, theta=None)(inputs)
    assert result.labels[0].tolist() == labels


def test_theta_is_in_0_1_and_ignores_only_scores_below_it():
    """Defaults: APM_R and APM_C with theta 0.01; theta 0 is allowed (nothing is below it), 1 is
    not. With theta 0.5 the background anchors scored 0.25 / 0.5 / 0.75: only the first is
    ignored."""
    default = PromotedAnchorAssigner()
    assert (default.promote, default.theta) == (True, 0.01)
    assert PromotedAnchorAssigner(theta=0.0).theta == 0.0
    for theta in (1.0, -0.1):
        with pytest.raises(ValueError, match=rf"^theta must be None or in \[0, 1\), got {theta}$"):
            PromotedAnchorAssigner(theta=theta)
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    anchors = torch.tensor(
        [[0.0, 0.0, 20.0, 20.0]] + [[40.0 * i, 40.0, 40.0 * i + 20, 60.0] for i in range(3)]
    )
    inputs = _inputs(anchors, gt, torch.zeros(4, 4), torch.tensor([0.0, 0.25, 0.5, 0.75]))
    result = PromotedAnchorAssigner(promote=False, theta=0.5)(inputs)
    assert result.labels[0].tolist() == [0, -1, K, K]


def test_matching_on_promoted_anchors_differs_from_the_initial_one():
    """Anchor 1 starts 10 px right of the GT (IoU 0.33: ignored) and the APM moves it onto the GT
    (positive after promotion); anchor 0 sits on the GT but the APM moves it away (IoU < 0.3:
    background after promotion, and ignored by theta since its APM score is 0.001)."""
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    anchors = torch.tensor(
        [[0.0, 0.0, 20.0, 20.0], [10.0, 0.0, 30.0, 20.0], [60.0, 60.0, 80.0, 80.0]]
    )
    deltas = torch.tensor([[2.0, 0.0, 0.0, 0.0], [-0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    scores = torch.tensor([0.001, 0.9, 0.5])
    inputs = _inputs(anchors, gt, deltas, scores)
    result = _staged()(inputs)
    first = result.stages["initial"]
    assert first.labels[0].tolist() == [0, -1, K]
    assert result.labels[0].tolist() == [-1, 0, K]  # theta ignores the easy negative 0, not 2
    assert torch.allclose(result.inputs.anchors[0, 1], gt[0])
    assert torch.allclose(promoted_anchors(inputs)[0], result.inputs.anchors[0])
    no_promotion = _staged(theta=None, promote=False)(inputs)
    assert torch.equal(no_promotion.labels, first.labels)


def test_theta_rule_never_ignores_a_positive():
    g = torch.Generator().manual_seed(0)
    for trial in range(30):
        R, M = 200, 6
        xy = torch.rand(R, 2, generator=g) * 100
        anchors = torch.cat([xy, xy + torch.rand(R, 2, generator=g) * 40 + 4], 1)
        gxy = torch.rand(M, 2, generator=g) * 100
        gts = torch.cat([gxy, gxy + torch.rand(M, 2, generator=g) * 40 + 4], 1)
        deltas = torch.randn(R, 4, generator=g) * 0.2
        scores = torch.rand(R, generator=g) * 0.02  # half of them below theta = 0.01
        inputs = _inputs(anchors, gts, deltas, scores)
        with_theta = _staged(theta=0.01)(inputs)
        without = _staged(theta=None)(inputs)
        pos = without.positive_mask(K)
        assert torch.equal(with_theta.positive_mask(K), pos), trial  # positives untouched
        dropped = (without.labels != with_theta.labels)[0]
        assert (with_theta.labels[0][dropped] == -1).all()
        assert (scores[dropped] < 0.01).all() and (without.labels[0][dropped] == K).all()
        assert int(dropped.sum()) > 0


# ---------------------------------------------------------------- FAM
def test_fam_with_zero_offsets_is_a_plain_3x3_conv():
    torch.manual_seed(0)
    fam = FeatureAlignment(8, num_anchors=6, mode="disentangled").double()
    x = torch.randn(2, 8, 7, 9, dtype=torch.float64)
    apm_reg = torch.randn(2, 24, 7, 9, dtype=torch.float64)
    plain = torch.relu(F.conv2d(x, fam.weight, fam.bias, padding=1))
    assert torch.allclose(fam(x, apm_reg), plain)  # zero-initialised F and G
    for mode in ("none", "implicit", "location", "shape", "concat"):
        other = FeatureAlignment(8, num_anchors=6, mode=mode).double()
        other.weight.data.copy_(fam.weight)
        assert torch.allclose(other(x, apm_reg), plain), mode


def test_fam_implicit_offsets_come_from_a_3x3_conv_of_the_features():
    """Table 1 (a), a standard DCN: each tap's offset reads the 3 x 3 neighbourhood of the
    features (a 1 x 1 offset conv would see only its own location)."""
    fam = FeatureAlignment(8, num_anchors=6, mode="implicit")
    assert fam.offset_conv.kernel_size == (3, 3) and fam.offset_conv.padding == (1, 1)
    torch.manual_seed(0)
    torch.nn.init.normal_(fam.offset_conv.weight)
    x = torch.zeros(1, 8, 5, 5)
    x[..., 2, 3] = 1.0  # one non-zero location: its left neighbour (2, 2) sees it
    offsets = fam.offsets(x, None)
    assert offsets.shape == (1, 18, 5, 5)
    assert offsets[..., 2, 2].abs().sum() > 0 and offsets[..., 0, 0].abs().sum() == 0


def test_fam_shared_offset_equals_a_shifted_sampling_grid():
    """c = (dy, dx) = (1, 2) for all taps samples x at (y + 1, x + 2): the plain conv of the
    shifted map (zeros beyond the border). Row 0 and column 0 differ by construction (the
    shifted map's zero padding there hides values the deformable conv still samples)."""
    torch.manual_seed(0)
    fam = FeatureAlignment(4, num_anchors=1, mode="location").double()
    with torch.no_grad():
        fam.f_loc.bias.copy_(torch.tensor([1.0, 2.0], dtype=torch.float64))  # (dy, dx)
    x = torch.randn(1, 4, 6, 8, dtype=torch.float64)
    shifted = torch.zeros_like(x)
    shifted[..., :-1, :-2] = x[..., 1:, 2:]
    expected = torch.relu(F.conv2d(shifted, fam.weight, fam.bias, padding=1))
    out = fam(x, torch.zeros(1, 4, 6, 8, dtype=torch.float64))
    assert torch.allclose(out[..., 1:, 1:], expected[..., 1:, 1:])
    assert not torch.allclose(out, torch.relu(F.conv2d(x, fam.weight, fam.bias, padding=1)))
    with pytest.raises(ValueError, match="FAM mode"):
        FeatureAlignment(4, 1, mode="dcn")


def _fam_with_learned_offsets(offset_grad_mul=1.0):
    torch.manual_seed(0)
    fam = FeatureAlignment(4, num_anchors=1, mode="disentangled", offset_grad_mul=offset_grad_mul)
    fam = fam.double()
    with torch.no_grad():  # offsets of a few pixels, as a trained FAM has
        fam.f_loc.weight.copy_(torch.tensor([[[[0.5]], [[1.0]]], [[[-1.0]], [[0.25]]]]))
        fam.g_shape.bias.copy_(torch.linspace(-1.5, 1.5, 18))
    return fam


@pytest.mark.parametrize("mode", ["implicit", "location", "shape", "concat", "disentangled"])
def test_fam_twins_from_one_seed_start_from_the_same_weights(mode):
    """The zero-initialised offset branch draws no random numbers: a FAM head and its no-FAM twin
    built from one seed hold the same weights in every layer they share (so a Table 1/2 arm
    differs from its twin by its module only), and the FAM adds only zeros."""
    shapes = [ShapeSpec(channels=16)] * 3

    def build(fam_mode):
        torch.manual_seed(0)
        return PADetHead(
            input_shape=shapes, num_classes=K, num_anchors=[4, 4, 4], fam_mode=fam_mode
        )

    plain, fam = build("none").state_dict(), build(mode).state_dict()
    assert plain.keys() <= fam.keys()
    assert all(torch.equal(plain[k], fam[k]) for k in plain)
    extra = [k for k in fam if k not in plain]
    assert extra and all(not fam[k].any() for k in extra)
    after_fam = torch.rand(1)  # the random stream after building the FAM head ...
    build("none")
    assert torch.equal(after_fam, torch.rand(1))  # ... is where the no-FAM build leaves it


def test_fam_offset_grad_mul_scales_only_the_offset_branch_gradient():
    """0.1 scales the gradient of F and G by 0.1 and nothing else (values, the conv's gradient);
    0 leaves them untrained: the FAM stays the plain conv of its zero initialisation."""
    x = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    apm_reg = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    grads, outs = {}, {}
    for m in (1.0, 0.1, 0.0):
        fam = _fam_with_learned_offsets(m)
        out = fam(x, apm_reg)
        (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out).cos()).sum().backward()
        outs[m] = out.detach()
        grads[m] = {n: p.grad for n, p in fam.named_parameters()}
    assert torch.equal(outs[1.0], outs[0.0])
    assert torch.allclose(outs[1.0], outs[0.1], rtol=1e-12, atol=1e-12)
    for name in ("f_loc.weight", "f_loc.bias", "g_shape.weight", "g_shape.bias"):
        assert grads[1.0][name].abs().sum() > 0
        assert torch.allclose(grads[0.1][name], 0.1 * grads[1.0][name])
        assert grads[0.0][name] is None
    for name in ("weight", "bias"):
        assert torch.allclose(grads[0.1][name], grads[1.0][name])
        assert torch.allclose(grads[0.0][name], grads[1.0][name])
    with pytest.raises(ValueError, match="offset_grad_mul"):
        FeatureAlignment(4, 1, offset_grad_mul=2.0)


def test_fam_logs_offset_magnitudes_and_their_gradient_in_training():
    fam = _fam_with_learned_offsets()
    fam.stats_name = "fam0"
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    apm_reg = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    offsets = fam.offsets(x, apm_reg).detach()
    with EventStorage(0) as storage:
        fam.eval()
        fam(x, apm_reg)
        assert "padet/fam0_offset_abs" not in storage.histories()  # inference logs nothing
        fam.train()
        out = fam(x, apm_reg)
        offset = fam.offsets(x, apm_reg)
        offset.retain_grad()
        (2.0 * out.sum()).backward()
        h = storage.histories()
        assert h["padet/fam0_offset_abs"].latest() == pytest.approx(offsets.abs().mean().item())
        assert h["padet/fam0_offset_max"].latest() == pytest.approx(offsets.abs().max().item())
        # the RMS of dL/d(offsets), checked against a second forward pass's gradient
        twin = _fam_with_learned_offsets()
        off = twin.offsets(x, apm_reg).detach().requires_grad_(True)
        y = torch.relu(
            torchvision.ops.deform_conv2d(x, off, twin.weight, twin.bias, padding=(1, 1))
        )
        (2.0 * y.sum()).backward()
        rms = off.grad.pow(2).mean().sqrt().item()
        assert rms > 0
        assert h["padet/fam0_offset_grad"].latest() == pytest.approx(rms, rel=1e-6)
    fam(x, apm_reg)  # no storage: nothing to log, no error


# ---------------------------------------------------------------- the detector
@pytest.fixture(scope="module")
def tiny_padet():
    cfg = LazyConfig.load(os.path.join(REPO, "configs/common/models/padet.py"))
    cfg.model.backbone.encoder = dict(_target_=ResNetEncoder, depth=18, num_extra=2, width=0.125)
    cfg.model.backbone.channels = 32
    cfg.model.head.input_shape = [ShapeSpec(channels=32)] * 6
    cfg.model.num_classes = K
    torch.manual_seed(0)
    return instantiate(cfg.model)


def test_lazy_and_yacs_builds_agree():
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from semianchor.config import add_semianchor_config

    cfg = add_semianchor_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, "configs/yacs/PADet_VGG16_384.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.SEMIANCHOR.PADET.ENCODER_WIDTH = 0.125
    yacs = build_model(cfg)
    lazy_cfg = LazyConfig.load(os.path.join(REPO, "configs/COCO-Detection/padet_VGG16_384.py"))
    lazy_cfg.model.backbone.encoder.width = 0.125
    lazy = instantiate(lazy_cfg.model)
    assert repr(yacs.assigner) == repr(lazy.assigner)
    assert yacs.anchor_generator.num_cell_anchors == lazy.anchor_generator.num_cell_anchors
    for attr in (
        "soft_nms",
        "theta",
        "neg_pos_ratio",
        "test_score_thresh",
        "max_detections_per_image",
        "test_input_size",
    ):
        assert getattr(yacs, attr) == getattr(lazy, attr), attr
    assert lazy.test_input_size == (384, 384)


def test_inference_uses_promoted_anchors_the_apm_gate_and_soft_nms(tiny_padet):
    """A finite image with NaN/inf injected into the detection regression: every returned box
    is finite; at most 300 detections; scores are soft-NMS's (decayed, so some drop below the
    gate); the APM gate removes everything when theta is 1."""
    model = tiny_padet
    model.eval()
    forward = model.head.forward

    def poisoned(features):
        out = forward(features)
        out["cls"] = [x.clone() for x in out["cls"]]
        for x in out["cls"]:  # foreground logits up: every anchor passes the 0.01 gate
            x.view(x.shape[0], -1, K + 1, *x.shape[-2:])[:, :, :K] += 4.0
        out["reg"] = [
            torch.where(torch.rand_like(x) < 0.3, torch.full_like(x, float("nan")), x)
            for x in out["reg"]
        ]
        return out

    model.head.forward = poisoned
    try:
        with torch.no_grad():
            out = model(make_batch(2, size=96))
            boxes = [o["instances"].pred_boxes.tensor for o in out]
            assert sum(len(b) for b in boxes) > 0
            assert all(torch.isfinite(b).all() and len(b) <= 300 for b in boxes)
            model.theta = 0.999  # APM probabilities start at the 0.01 prior: all gated out
            gated = model(make_batch(1, size=96))[0]["instances"]
            assert len(gated) == 0
    finally:
        model.theta = 0.01
        del model.head.forward


def test_default_predictor_warps_to_the_square_input_as_evaluation_does():
    """The yacs twin under DefaultPredictor: a 480 x 640 image reaches the backbone as 384 x 384
    (the LazyConfig's test mapper's warp, not ResizeShortestEdge's 288 x 384), the detections are
    those of the model on the warped image, in the original 640 x 480 frame; training images are
    never warped."""
    import numpy as np

    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    from semianchor.config import add_semianchor_config

    cfg = add_semianchor_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, "configs/yacs/PADet_VGG16_384.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.SEMIANCHOR.PADET.ENCODER_WIDTH = 0.125
    cfg.MODEL.SEMIANCHOR.PADET.DECODER_CHANNELS = 32
    cfg.MODEL.SEMIANCHOR.NUM_CLASSES = K
    torch.manual_seed(0)
    predictor = DefaultPredictor(cfg)
    model = predictor.model
    assert model.test_input_size == (384, 384)
    seen = []
    hook = model.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-2:]))
    try:
        image = np.random.RandomState(0).randint(0, 255, (480, 640, 3)).astype(np.uint8)
        served = predictor(image)["instances"]
        assert seen == [(384, 384)]
        assert served.image_size == (480, 640) and len(served) > 0
        boxes = served.pred_boxes.tensor
        assert boxes[:, 0::2].max() <= 640 and boxes[:, 1::2].max() <= 480
        assert boxes[:, 2:].max() > 384  # scaled back beyond the 384 frame, not clipped to it
        tensor = torch.as_tensor(image.transpose(2, 0, 1).astype("float32"))
        warped = F.interpolate(
            tensor[None], size=(384, 384), mode="bilinear", align_corners=False, antialias=True
        )[0]
        model.test_input_size = None
        with torch.no_grad():
            direct = model([{"image": warped, "height": 480, "width": 640}])[0]["instances"]
        assert len(served) == len(direct)
        assert torch.allclose(boxes, direct.pred_boxes.tensor, atol=1e-3)
        assert torch.allclose(served.scores, direct.scores)
        model.test_input_size = (384, 384)
        with torch.no_grad():  # without height / width: the input image's frame
            own = model([{"image": tensor}])[0]["instances"]
        assert own.image_size == (480, 640) and len(own) == len(served)
        seen.clear()
        model.train()
        with EventStorage():
            model(make_batch(2, size=96))  # two: the 1 x 1 level's BatchNorm needs > 1 value
        assert seen == [(96, 96)]
    finally:
        hook.remove()


def test_test_input_size_must_be_two_positive_sides():
    cfg = LazyConfig.load(os.path.join(REPO, "configs/common/models/padet.py"))
    cfg.model.backbone.encoder = dict(_target_=ResNetEncoder, depth=18, num_extra=2, width=0.125)
    cfg.model.backbone.channels = 32
    cfg.model.head.input_shape = [ShapeSpec(channels=32)] * 6
    cfg.model.test_input_size = (384,)
    with pytest.raises(ValueError, match="test_input_size"):
        instantiate(cfg.model)


# ---------------------------------------------------------------- ImageNet weights (ResNet)
def _as_msra_caffe2_names(state_dict):
    """A Detectron2 ResNet's weights under the names of MSRA's Caffe2 ImageNet models (the inverse
    of ``convert_basic_c2_names`` for conv and affine-BN blobs), as numpy arrays, plus fc1000."""
    blocks = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[-1] not in ("weight", "bias"):  # MSRA's models have no running statistics
            continue
        if parts[0] == "stem":  # stem.conv1.weight, stem.conv1.norm.{weight,bias}
            if parts[2] != "norm":
                name = "conv1_w"
            else:
                name = "res_conv1_bn_s" if parts[-1] == "weight" else "res_conv1_bn_b"
        else:
            stage, block, conv = parts[:3]
            name = f"{stage}_{block}_{blocks[conv]}"
            if parts[3] == "norm":
                name += "_bn_s" if parts[-1] == "weight" else "_bn_b"
            else:
                name += "_w"
        out[name] = value.numpy()
    out["fc1000_w"], out["fc1000_b"] = torch.zeros(1000, 512).numpy(), torch.zeros(1000).numpy()
    return out


def test_resnet_encoder_loads_msra_caffe2_imagenet_weights(tmp_path):
    """What padet_R101_*.py do with ``detectron2://ImageNetPretrained/MSRA/R-101.pkl``, on an R-18
    in the same Caffe2 format: Detectron2's checkpointer maps every blob onto
    ``backbone.encoder.resnet.*`` (FrozenBN: scale and bias only), nothing else is touched."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling.backbone import BasicStem, ResNet

    torch.manual_seed(1)
    reference = ResNet(
        BasicStem(in_channels=3, out_channels=64, norm="FrozenBN"),
        ResNet.make_default_stages(depth=18, norm="FrozenBN"),
        out_features=["res5"],
    )
    with torch.no_grad():
        for m in reference.modules():
            if hasattr(m, "running_var"):  # FrozenBN: scale and bias are buffers
                m.weight.copy_(torch.rand_like(m.weight) + 0.5)
                m.bias.copy_(torch.randn_like(m.bias))
    blobs = _as_msra_caffe2_names(reference.state_dict())
    path = tmp_path / "R-18-msra.pkl"
    with open(path, "wb") as f:
        pickle.dump(blobs, f)  # MSRA's ImageNet pkl: a flat dict of blobs, no "model" key

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            encoder = ResNetEncoder(
                depth=18, num_extra=2, width=0.125, norm="FrozenBN", stride_in_1x1=True, freeze_at=2
            )
            self.backbone = EncoderDecoder(encoder=encoder, channels=16)

    torch.manual_seed(0)
    model = Detector()
    decoder_before = {k: v.clone() for k, v in model.state_dict().items() if "resnet" not in k}
    DetectionCheckpointer(model).load(str(path))
    loaded = model.state_dict()
    ref = reference.state_dict()
    for key, value in ref.items():
        if "running" in key:
            continue
        assert torch.equal(loaded[f"backbone.encoder.resnet.{key}"], value), key
    assert all(torch.equal(loaded[k], v) for k, v in decoder_before.items())
    resnet = model.backbone.encoder.resnet
    assert not any(p.requires_grad for p in resnet.stem.parameters())  # freeze_at=2
    assert not any(p.requires_grad for p in resnet.res2.parameters())
    assert all(p.requires_grad for p in resnet.res3.parameters())


def test_resnet_encoder_stride_in_1x1_for_msra_bottlenecks():
    msra = ResNetEncoder(depth=50, num_extra=0, norm="FrozenBN", stride_in_1x1=True)
    torchvision_style = ResNetEncoder(depth=50, num_extra=0)
    first = msra.resnet.res3[0]
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
    first = torchvision_style.resnet.res3[0]
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)
    assert type(msra.resnet.res3[0].conv1.norm).__name__ == "FrozenBatchNorm2d"
    assert isinstance(torchvision_style.resnet.res3[0].conv1.norm, torch.nn.BatchNorm2d)


def test_r101_configs_use_msra_weights_with_a_matching_encoder():
    for name, sides in (("padet_R101_384.py", 6), ("padet_R101_512.py", 7)):
        cfg = LazyConfig.load(os.path.join(REPO, "configs/COCO-Detection", name))
        enc = cfg.model.backbone.encoder
        assert enc._target_ is ResNetEncoder and enc.depth == 101
        assert (enc.norm, enc.stride_in_1x1) == ("FrozenBN", True)
        assert enc.num_extra == sides - 4  # C3, C4, C5 + extras + the pooled last level
        assert cfg.train.init_checkpoint == "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
        assert list(cfg.model.pixel_std) == [1.0, 1.0, 1.0]  # Caffe weights: no std division
        assert len(cfg.model.head_in_features) == sides


# ---------------------------------------------------------------- Table 2 components
def _tiny(model):
    """The R-18 (width 0.125), 32-channel, 3-class shrink of a PADet model config."""
    model.backbone.encoder = dict(_target_=ResNetEncoder, depth=18, num_extra=2, width=0.125)
    model.backbone.channels = 32
    model.head.input_shape = [ShapeSpec(channels=32)] * 6
    model.num_classes = K
    return model


def _common_model(**switches):
    cfg = LazyConfig.load(os.path.join(REPO, "configs/common/models/padet.py"))
    for key, value in switches.items():
        node = cfg.model
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return _tiny(cfg.model)


COMPONENTS = {  # Table 2 row: (switches, APM losses)
    "baseline": (
        {
            "promote": False,
            "theta": None,
            "head.apm_scoring": False,
            "head.apm_adjustment": False,
            "head.fam_mode": "none",
        },
        set(),
    ),
    "apm_c": (
        {"promote": False, "head.apm_adjustment": False, "head.fam_mode": "none"},
        {"loss_padet_apm_cls"},
    ),
    "apm_r": (
        {"theta": None, "head.apm_scoring": False, "head.fam_mode": "none"},
        {"loss_padet_apm_box"},
    ),
    "apm": ({"head.fam_mode": "none"}, {"loss_padet_apm_cls", "loss_padet_apm_box"}),
    "apm_fam": ({}, {"loss_padet_apm_cls", "loss_padet_apm_box"}),
}


@pytest.mark.parametrize("row", sorted(COMPONENTS))
def test_table2_components_train_and_infer_with_only_their_branches(row):
    switches, apm_losses = COMPONENTS[row]
    torch.manual_seed(0)
    model = instantiate(_common_model(**switches))
    promote, theta = switches.get("promote", True), switches.get("theta", 0.01)
    assert (model.promote, model.theta, model.use_apm) == (promote, theta, bool(apm_losses))
    stage = dict(model.assigner.stages)["promoted"]
    assert (stage.promote, stage.theta) == (promote, theta)  # interpolated from the model's
    assert ("apm_cls" in model.head_outputs) == (theta is not None)
    assert ("apm_reg" in model.head_outputs) == promote
    model.train()
    with EventStorage():
        losses = model(make_batch(2, size=96))
    assert set(losses) == {"loss_padet_cls", "loss_padet_box"} | apm_losses
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    untrained = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not untrained  # every built branch is trained (DDP needs no find_unused_parameters)
    model.eval()
    with torch.no_grad():
        out = model(make_batch(1, size=96))[0]["instances"]
    assert torch.isfinite(out.pred_boxes.tensor).all() and len(out) <= 300


def test_apm_switches_must_match_the_head_and_the_assigner():
    message = r"^promote=True needs the APM anchor adjustment \(APM_R\) branch: the head has no "
    with pytest.raises(ValueError, match=message):
        instantiate(_common_model(**{"head.apm_adjustment": False, "head.fam_mode": "none"}))
    with pytest.raises(ValueError, match="untrained"):
        instantiate(_common_model(theta=None))  # the scoring branch would be built but unused
    cfg = _common_model()
    cfg.assigner.stages[1][1].promote = False  # training on initial anchors, test on promoted
    with pytest.raises(ValueError, match="disagrees with the model"):
        instantiate(cfg)
    with pytest.raises(ValueError, match="FAM mode 'disentangled'"):
        instantiate(_common_model(promote=False, **{"head.apm_adjustment": False}))
    # use_apm=False is the baseline's shortcut: promote and theta off
    cfg = _common_model(**COMPONENTS["baseline"][0])
    cfg.promote, cfg.theta, cfg.use_apm = True, 0.01, False
    cfg.assigner.stages[1][1].update(promote=False, theta=None)
    model = instantiate(cfg)
    assert (model.promote, model.theta, model.use_apm) == (False, None, False)


def _yacs_model(prior_prob=0.01, **padet):
    """The yacs PADet (VGG-16 width 0.125) with ``MODEL.SEMIANCHOR.PADET`` switches changed."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from semianchor.config import add_semianchor_config

    cfg = add_semianchor_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, "configs/yacs/PADet_VGG16_384.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.SEMIANCHOR.PADET.ENCODER_WIDTH = 0.125
    cfg.MODEL.SEMIANCHOR.PADET.update(padet)
    cfg.MODEL.SEMIANCHOR.HEAD.PRIOR_PROB = prior_prob
    return build_model(cfg)


def test_yacs_use_apm_false_builds_the_baseline():
    model = _yacs_model(USE_APM=False, FAM_MODE="none")
    assert not model.use_apm and set(model.head_outputs) == {"cls", "reg"}
    stage = dict(model.assigner.stages)["promoted"]
    assert (stage.promote, stage.theta) == (False, None)


YACS_SWITCHES = {  # MODEL.SEMIANCHOR.PADET switches -> the model attributes they set
    "no_theta": ({"THETA": -1.0}, {"theta": None, "promote": True}),
    "theta_0": ({"THETA": 0.0}, {"theta": 0.0, "promote": True}),
    "no_promote": ({"PROMOTE": False, "FAM_MODE": "none"}, {"theta": 0.01, "promote": False}),
    "paper_loss": (
        {"LOSS_MODE": "paper", "NEG_POS_RATIO": 0.0, "APM_NEG_POS_RATIO": 0.0},
        {"loss_mode": "paper", "loss_normalizer_momentum": 0.0, "neg_pos_ratio": 0.0},
    ),
    "ohem_knobs": (
        {
            "NEG_POS_RATIO": 2.0,
            "APM_NEG_POS_RATIO": 1.0,
            "TEST_WARP": False,
            "SOFT_NMS_METHOD": "gaussian",
            "SOFT_NMS_IOU": 0.4,
            "SOFT_NMS_SIGMA": 0.25,
            "SOFT_NMS_MIN_SCORE": 0.002,
        },
        {
            "loss_mode": "ohem",
            "loss_normalizer_momentum": 0.9,
            "neg_pos_ratio": 2.0,
            "apm_neg_pos_ratio": 1.0,
            "test_input_size": None,
            "soft_nms": dict(method="gaussian", iou_threshold=0.4, sigma=0.25, min_score=0.002),
        },
    ),
}


@pytest.mark.parametrize("row", sorted(YACS_SWITCHES))
def test_yacs_padet_switches_reach_the_model(row):
    """THETA < 0: no APM_C (theta None, no scoring branch); THETA 0 is a theta (APM_C on);
    LOSS_MODE "paper" sets the EMA momentum to 0; the mining ratios, test warp and soft-NMS."""
    switches, attrs = YACS_SWITCHES[row]
    model = _yacs_model(**switches)
    for key, value in attrs.items():
        assert getattr(model, key) == value, key
    assert ("apm_cls" in model.head_outputs) == (model.theta is not None)
    assert ("apm_reg" in model.head_outputs) == model.promote


def test_yacs_head_switches_reach_the_head():
    model = _yacs_model(
        prior_prob=0.02, FAM_LEVELS=3, FAM_GRAD_MUL=0.1, FAM_IMPL="sampled", FAM_OFFSET_GRAD_MUL=0.5
    )
    fam = model.head.fam
    assert [f.mode for f in fam] == ["disentangled"] * 3 + ["none"] * 3
    assert {(f.grad_mul, f.impl, f.offset_grad_mul) for f in fam} == {(0.1, "sampled", 0.5)}
    bias = model.head.apm_cls[0].bias  # the APM logits start at the prior probability
    torch.testing.assert_close(bias, torch.full((6,), -math.log(0.98 / 0.02)))


# ---------------------------------------------------------------- projects/PADet/configs
CONFIG_DIR = os.path.join(REPO, "projects/PADet/configs")
VGG_BASE = "configs/COCO-Detection/padet_VGG16_384.py"
R18_BASE = "configs/quickstart/padet_R18_coco_json.py"
# config -> (base, the switches it changes), written from Tables 1 and 2
ABLATIONS = {
    f"table2_padet_{row}_VGG16_384.py": (VGG_BASE, switches)
    for row, (switches, _) in COMPONENTS.items()
}
ABLATIONS.update(
    {
        f"table1_padet_fam_{mode}_VGG16_384.py": (
            VGG_BASE,
            {} if mode == "disentangled" else {"head.fam_mode": mode},
        )
        for mode in ("none", "implicit", "location", "shape", "concat", "disentangled")
    }
)
ABLATIONS.update(
    {
        "table1_padet_fam_disentangled_gradmul0p1_VGG16_384.py": (
            VGG_BASE,
            {"head.fam_grad_mul": 0.1},
        ),
        "table1_padet_fam_disentangled_gradmul1_VGG16_384.py": (
            VGG_BASE,
            {"head.fam_grad_mul": 1.0},
        ),
        "padet_baseline_R18_coco_json.py": (R18_BASE, COMPONENTS["baseline"][0]),
        "padet_apm_R18_coco_json.py": (R18_BASE, COMPONENTS["apm"][0]),
        "padet_apm_fam_R18_coco_json.py": (R18_BASE, {}),
        "padet_apm_fam_offset_gradmul0_R18_coco_json.py": (
            R18_BASE,
            {"head.fam_offset_grad_mul": 0.0},
        ),
        "padet_apm_fam_offset_gradmul0p1_R18_coco_json.py": (
            R18_BASE,
            {"head.fam_offset_grad_mul": 0.1},
        ),
    }
)
PAPER_LOSS = {"loss_mode": "paper", "neg_pos_ratio": 0.0, "apm_neg_pos_ratio": 0.0}
ABLATIONS.update(
    {
        f"padet_{row}_paper_loss_R18_coco_json.py": (R18_BASE, {**COMPONENTS[row][0], **PAPER_LOSS})
        for row in ("baseline", "apm")
    }
)
ABLATIONS["padet_apm_fam_paper_loss_R18_coco_json.py"] = (R18_BASE, PAPER_LOSS)
ABLATIONS["table2_padet_apm_fam_paper_loss_VGG16_384.py"] = (VGG_BASE, PAPER_LOSS)


def _leaves(node, prefix=""):
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(node, resolve=False) if prefix == "" else node
    out = {}
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, (dict, list, tuple)):
            out.update(_leaves(value, path + "."))
        else:
            out[path] = value
    return out


def test_every_padet_project_config_is_listed():
    assert sorted(ABLATIONS) == sorted(p for p in os.listdir(CONFIG_DIR) if p.endswith(".py"))


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_config_changes_only_its_switches(name):
    """Against its base: the listed APM/FAM switches and the output folder, nothing else (same
    recipe, data, schedule for every arm); the model builds (shrunk) with those components."""
    base_path, switches = ABLATIONS[name]
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, name))
    base = LazyConfig.load(os.path.join(REPO, base_path))
    new, old = _leaves(cfg), _leaves(base)
    changed = {k for k in new.keys() | old.keys() if new.get(k, "?") != old.get(k, "?")}
    expected = {f"model.{k}" for k, v in switches.items() if old[f"model.{k}"] != v}
    assert changed - {"train.output_dir"} == expected
    for key, value in switches.items():
        assert new[f"model.{key}"] == value, key
    assert cfg.train.output_dir != base.train.output_dir
    model = instantiate(_tiny(cfg.model))
    assert isinstance(model, PADet)
    promote, theta = switches.get("promote", True), switches.get("theta", 0.01)
    assert (model.promote, model.theta) == (promote, theta)
    modes = {fam.mode for fam in model.head.fam[:4]}
    assert modes == {switches.get("head.fam_mode", "disentangled")}
    assert {fam.grad_mul for fam in model.head.fam} == {switches.get("head.fam_grad_mul", 0.0)}


SHIPPED = sorted(
    os.path.relpath(p, REPO)
    for p in glob.glob(os.path.join(REPO, "configs", "*", "padet_*.py"))
    + glob.glob(os.path.join(CONFIG_DIR, "*.py"))
    if "/common/" not in p  # model / schedule fragments, not configs
)


@pytest.mark.parametrize("name", SHIPPED)
def test_test_input_size_is_the_test_mappers_warp(name):
    """A config whose test mapper warps to S x S has the model warp other inputs to S x S too
    (DefaultPredictor, a user's loader); one that keeps the aspect ratio has no warp."""
    cfg = LazyConfig.load(os.path.join(REPO, name))
    (aug,) = cfg.dataloader.test.mapper.augmentations or [None]
    if aug is not None and aug["_target_"].__name__ == "Resize":
        assert tuple(cfg.model.test_input_size) == tuple(aug.shape)
    else:
        assert cfg.model.test_input_size is None
