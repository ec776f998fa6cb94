"""Value tests of the box coders and the dense heads' per-level outputs.

The LTRB coder (FCOS, Tian et al. 2019, Sec. 3.1, Eq. 1) regresses the distances
``(l, t, r, b) = (cx - x1, cy - y1, x2 - cx, y2 - cy)`` from the anchor centre to the four sides of
the box, here in units of the anchor's stride. The expected values below are computed by hand.
"""

import pytest
import torch

from semianchor.modeling.box_coder import DeltaBoxCoder, LTRBBoxCoder, build_box_coder

# Three anchors with distinct x1, y1, x2, y2 (so that swapping coordinates changes the result).
LTRB_ANCHORS = torch.tensor(
    [[0.0, 2.0, 8.0, 6.0], [4.0, 0.0, 12.0, 16.0], [10.0, 20.0, 30.0, 24.0]]
)  # centres (4, 4), (8, 8), (20, 22)
LTRB_STRIDES = torch.tensor([2.0, 4.0, 8.0])
# Two images, three boxes each.
LTRB_BOXES = torch.tensor(
    [
        [[1.0, 3.0, 10.0, 12.0], [0.0, 4.0, 14.0, 9.0], [4.0, 14.0, 36.0, 30.0]],
        [[2.0, 1.0, 6.0, 5.0], [6.0, 2.0, 8.0, 20.0], [20.0, 22.0, 20.0, 22.0]],
    ]
)
# (cx - x1, cy - y1, x2 - cx, y2 - cy) / stride, by hand.
LTRB_TARGETS = torch.tensor(
    [
        [
            [3 / 2, 1 / 2, 6 / 2, 8 / 2],
            [8 / 4, 4 / 4, 6 / 4, 1 / 4],
            [16 / 8, 8 / 8, 16 / 8, 8 / 8],
        ],
        [[2 / 2, 3 / 2, 2 / 2, 1 / 2], [2 / 4, 6 / 4, 0 / 4, 12 / 4], [0.0, 0.0, 0.0, 0.0]],
    ]
)


@pytest.mark.parametrize("batched_anchors", [False, True])
def test_ltrb_encode_hand_values_and_round_trip(batched_anchors):
    coder = LTRBBoxCoder()
    anchors = LTRB_ANCHORS.expand(2, -1, -1) if batched_anchors else LTRB_ANCHORS
    target = coder.encode(anchors, LTRB_BOXES, LTRB_STRIDES)
    assert target.shape == (2, 3, 4)
    torch.testing.assert_close(target, LTRB_TARGETS, rtol=0, atol=1e-6)
    # decode is the inverse: (cx - l*s, cy - t*s, cx + r*s, cy + b*s) gives the boxes back ...
    torch.testing.assert_close(
        coder.decode(anchors, target, LTRB_STRIDES), LTRB_BOXES, rtol=0, atol=1e-5
    )
    # ... and encode(decode(x)) == x for any regression x.
    reg = torch.tensor([[0.5, 1.25, 2.0, 0.75], [3.0, 0.0, 1.5, 2.5], [0.25, 4.0, 1.0, 0.5]])
    boxes = coder.decode(anchors, reg.expand(2, -1, -1), LTRB_STRIDES)
    torch.testing.assert_close(
        coder.encode(anchors, boxes, LTRB_STRIDES), reg.expand(2, -1, -1), rtol=0, atol=1e-6
    )


def test_ltrb_encode_unbatched():
    target = LTRBBoxCoder().encode(LTRB_ANCHORS, LTRB_BOXES[0], LTRB_STRIDES)
    torch.testing.assert_close(target, LTRB_TARGETS[0], rtol=0, atol=1e-6)


def test_build_box_coder_passes_weights_and_clamp():
    coder = build_box_coder("deltas", weights=(10.0, 10.0, 5.0, 5.0), scale_clamp=2.5)
    assert isinstance(coder, DeltaBoxCoder)
    assert coder.weights == (10.0, 10.0, 5.0, 5.0) and coder.scale_clamp == 2.5
    assert isinstance(build_box_coder("ltrb"), LTRBBoxCoder)
    assert repr(build_box_coder("ltrb")) == "LTRBBoxCoder()"
    with pytest.raises(ValueError, match="unknown box coder 'xywh': expected 'deltas' or 'ltrb'"):
        build_box_coder("xywh")


# ---------------------------------------------------------------------------------------------
# Dense heads on 1x1 feature maps: a padded 3x3 conv then only sees its centre tap, so every
# output is the matrix product (centre weights) @ feature + bias, computed here by hand.
# ---------------------------------------------------------------------------------------------

FEATS = [torch.tensor([2.0, -3.0]).view(1, 2, 1, 1), torch.tensor([4.0, 1.0]).view(1, 2, 1, 1)]
LEVEL_SCALES = (2.0, 0.5)


def _set_centre(conv, weight, bias):
    """Zero the conv, then put ``weight`` (out, in) on its centre tap and ``bias``."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, conv.kernel_size[0] // 2, conv.kernel_size[1] // 2] = torch.tensor(weight)
        conv.bias.copy_(torch.tensor(bias))


def _shapes(levels=2, channels=2):
    from detectron2.layers import ShapeSpec

    return [ShapeSpec(channels=channels, stride=8 * 2**i) for i in range(levels)]


def _fixed_dense_head(cls, regression_activation="none", **kwargs):
    head = cls(
        input_shape=_shapes(),
        num_classes=1,
        num_anchors=1,
        conv_dims=[],  # no tower: the predictors read the features themselves
        quality="centerness",
        scale_per_level=True,
        regression_activation=regression_activation,
        **kwargs,
    )
    _set_centre(
        head.bbox_pred, [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], [0.5, -0.5, 0, 0]
    )
    _set_centre(head.cls_score, [[0.5, 0.5]], [0.0])
    _set_centre(head.quality_pred, [[1.0, 1.0]], [-1.0])
    with torch.no_grad():
        for scale, value in zip(head.scales, LEVEL_SCALES):
            scale.scale.fill_(value)
    return head


# bbox_pred(x) = (x0 + 0.5, x1 - 0.5, -x0, -x1): level 0 (2, -3) -> (2.5, -3.5, -2, 3) * 2,
# level 1 (4, 1) -> (4.5, 0.5, -4, -1) * 0.5
REG_RAW = [[5.0, -7.0, -4.0, 6.0], [2.25, 0.25, -2.0, -0.5]]
REG_RELU = [[5.0, 0.0, 0.0, 6.0], [2.25, 0.25, 0.0, 0.0]]
# d sum(reg) / d bbox_pred.bias: the sum of the level scales where the gradient passes
BIAS_GRAD = {
    "none": [2.5, 2.5, 2.5, 2.5],
    "relu": [2.5, 0.5, 0.0, 2.0],
    "relu_straight_through": [2.5, 2.5, 2.5, 2.5],
}


@pytest.mark.parametrize("activation", ["none", "relu", "relu_straight_through"])
def test_dense_head_level_outputs_hand_values(activation):
    from semianchor.modeling.heads.dense_head import DenseHead

    head = _fixed_dense_head(DenseHead, activation)
    out = head(FEATS)
    assert set(out) == {"cls", "reg", "quality"}
    reg = torch.stack([r.flatten() for r in out["reg"]])
    torch.testing.assert_close(reg, torch.tensor(REG_RAW if activation == "none" else REG_RELU))
    # cls = 0.5 (x0 + x1), quality = x0 + x1 - 1
    torch.testing.assert_close(
        torch.cat([c.flatten() for c in out["cls"]]), torch.tensor([-0.5, 2.5])
    )
    torch.testing.assert_close(
        torch.cat([q.flatten() for q in out["quality"]]), torch.tensor([-2.0, 4.0])
    )
    reg.sum().backward()
    torch.testing.assert_close(head.bbox_pred.bias.grad, torch.tensor(BIAS_GRAD[activation]))


def test_scale_default_and_forward():
    from semianchor.modeling.heads.dense_head import Scale

    assert Scale().scale.item() == 1.0
    torch.testing.assert_close(Scale(2.0)(torch.tensor([1.5, -3.0])), torch.tensor([3.0, -6.0]))


@pytest.mark.parametrize("norm, has_bias", [("GN", False), ("", True)])
def test_conv_tower_bias_only_without_norm(norm, has_bias):
    from semianchor.modeling.heads.dense_head import conv_tower

    tower = conv_tower(32, [32, 32], norm)
    convs = [m for m in tower if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 and all((c.bias is not None) == has_bias for c in convs)


def test_sad_head_level_outputs_hand_values():
    """SAD's head (Fig. 4): per-location classification (K), 4A deltas and A anchor-
    classification logits from the regression tower, with the per-level scale on the deltas."""
    from semianchor.modeling.heads.sad_head import SADHead

    head = SADHead(
        input_shape=_shapes(),
        num_classes=1,
        num_anchors=2,
        conv_dims=[],
        scale_per_level=True,
        quality="centerness",
    )
    reg_w = [
        [1.0, 0.0],
        [0.0, 1.0],
        [-1.0, 0.0],
        [0.0, -1.0],
        [1.0, 1.0],
        [2.0, 0.0],
        [0, 0],
        [0, 2],
    ]
    _set_centre(head.bbox_pred, reg_w, [0.5] * 8)
    _set_centre(head.cls_score, [[0.5, 0.5]], [0.0])
    _set_centre(head.quality_pred, [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    _set_centre(head.ac_pred, [[1.0, -1.0], [2.0, 0.0]], [0.25, -1.0])
    with torch.no_grad():
        for scale, value in zip(head.scales, LEVEL_SCALES):
            scale.scale.fill_(value)
    out = head(FEATS)
    assert set(out) == {"cls", "reg", "quality", "ac"} and set(head.outputs) == set(out)
    assert [o.shape for o in out["ac"]] == [(1, 2, 1, 1)] * 2
    assert [o.shape for o in out["cls"]] == [(1, 1, 1, 1)] * 2  # per location
    # ac = (x0 - x1 + 0.25, 2 x0 - 1): level 0 (2, -3), level 1 (4, 1)
    torch.testing.assert_close(
        torch.stack([o.flatten() for o in out["ac"]]), torch.tensor([[5.25, 3.0], [3.25, 7.0]])
    )
    # reg = scale * (W x + 0.5)
    expected_reg = [
        [2.5, -2.5, -1.5, 3.5, -0.5, 4.5, 0.5, -5.5],
        [4.5, 1.5, -3.5, -0.5, 5.5, 8.5, 0.5, 2.5],
    ]
    reg = torch.stack([o.flatten() for o in out["reg"]])
    torch.testing.assert_close(
        reg, torch.tensor(expected_reg) * torch.tensor(LEVEL_SCALES)[:, None]
    )
    torch.testing.assert_close(
        torch.cat([o.flatten() for o in out["cls"]]), torch.tensor([-0.5, 2.5])
    )
    torch.testing.assert_close(
        torch.stack([o.flatten() for o in out["quality"]]), torch.tensor([[2.0, -3.0], [4.0, 1.0]])
    )


# ---------------------------------------------------------------------------------------------
# from_config of the dense heads
# ---------------------------------------------------------------------------------------------


def _cfg(sizes=((32,),)):
    from detectron2.config import get_cfg

    from semianchor.config import add_semianchor_config

    cfg = add_semianchor_config(get_cfg())
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [list(s) for s in sizes]
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[1.0]]
    return cfg


def test_dense_head_from_config_single_level():
    from semianchor.modeling.heads.dense_head import DenseHead

    cfg = _cfg()
    cfg.MODEL.SEMIANCHOR.HEAD.NUM_CONVS = 2
    ret = DenseHead.from_config(cfg, _shapes(levels=1, channels=8))
    assert ret["num_anchors"] == 1 and ret["conv_dims"] == [8, 8]
    assert ret["quality"] == "centerness"
    cfg.MODEL.SEMIANCHOR.HEAD.QUALITY = ""
    assert DenseHead.from_config(cfg, _shapes(levels=1, channels=8))["quality"] is None


def test_dense_head_from_config_rejects_unequal_anchor_counts():
    from semianchor.modeling.heads.dense_head import DenseHead

    with pytest.raises(ValueError, match=r"same number of anchors, got \[1, 2\]"):
        DenseHead.from_config(_cfg(sizes=((32,), (64, 128))), _shapes(levels=2, channels=8))


def test_sad_and_dla_head_from_config():
    from semianchor.modeling.heads.dla_head import DLAHead
    from semianchor.modeling.heads.sad_head import SADHead

    cfg = _cfg()
    assert SADHead.from_config(cfg, _shapes(levels=1))["anchor_classification"] is True
    cfg.MODEL.SEMIANCHOR.SAD.ANCHOR_CLASSIFICATION = False
    assert SADHead.from_config(cfg, _shapes(levels=1))["anchor_classification"] is False
    assert DLAHead.from_config(cfg, _shapes(levels=1))["metric_channels"] is None  # 0: tower width
    cfg.MODEL.SEMIANCHOR.DLA.METRIC_CHANNELS = 3
    assert DLAHead.from_config(cfg, _shapes(levels=1))["metric_channels"] == 3


# ---------------------------------------------------------------------------------------------
# PADet's head (Tang et al. 2019, Sec. 3.2-3.3): APM + detection head per level, FAM
# ---------------------------------------------------------------------------------------------


def _padet_head(levels=5, channels=4, anchors=2, **kwargs):
    from semianchor.modeling.heads.padet_head import PADetHead

    return PADetHead(
        input_shape=_shapes(levels, channels),
        num_classes=2,
        num_anchors=[anchors] * levels,
        **kwargs,
    )


def test_padet_head_defaults_and_init():
    head = _padet_head()
    # defaults: the disentangled FAM on the first 4 levels, the APM detached, both APM branches
    assert [f.mode for f in head.fam] == ["disentangled"] * 4 + ["none"]
    assert all(
        f.grad_mul == 0.0 and f.impl == "auto" and f.offset_grad_mul == 1.0 for f in head.fam
    )
    assert [f.stats_name for f in head.fam] == [f"fam{i}" for i in range(5)]
    assert set(head.outputs) == {"cls", "reg", "apm_cls", "apm_reg"}
    assert len(head.apm_cls) == 5 and len(head.apm_reg) == 5
    # APM logits start at the focal prior: bias = -log((1 - 0.01) / 0.01); other biases 0
    prior_bias = torch.tensor(-4.59511985013459)
    for conv in head.apm_cls:
        torch.testing.assert_close(conv.bias, prior_bias.expand_as(conv.bias))
    for conv in list(head.apm_reg) + list(head.cls_pred) + list(head.reg_pred):
        assert torch.all(conv.bias == 0)
    # CBR3: conv 3x3 without bias, BatchNorm, ReLU
    for block in head.det_conv:
        assert [type(m) for m in block] == [torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU]
        assert block[0].bias is None and block[0].kernel_size == (3, 3)


def test_padet_head_passes_fam_options():
    head = _padet_head(
        fam_mode="shape",
        fam_levels=2,
        fam_grad_mul=0.1,
        fam_impl="sampled",
        fam_offset_grad_mul=0.5,
    )
    assert [f.mode for f in head.fam] == ["shape"] * 2 + ["none"] * 3
    assert all(f.grad_mul == 0.1 and f.impl == "sampled" for f in head.fam)
    assert all(f.offset_grad_mul == 0.5 for f in head.fam)


def test_padet_head_single_level_output_shapes():
    head = _padet_head(levels=1, anchors=3).eval()
    out = head([torch.randn(2, 4, 5, 6)])
    shapes = {k: [tuple(v.shape) for v in vs] for k, vs in out.items()}
    assert shapes == {
        "cls": [(2, 9, 5, 6)],
        "reg": [(2, 12, 5, 6)],
        "apm_cls": [(2, 3, 5, 6)],
        "apm_reg": [(2, 12, 5, 6)],
    }


def test_padet_head_argument_errors():
    from detectron2.layers import ShapeSpec

    from semianchor.modeling.heads.padet_head import PADetHead

    with pytest.raises(ValueError, match="all head input levels must have the same channels"):
        PADetHead(
            input_shape=[ShapeSpec(channels=4), ShapeSpec(channels=8)],
            num_classes=2,
            num_anchors=[2, 2],
        )
    with pytest.raises(
        ValueError, match=r"num_anchors \[2, 2\] must have one entry per level \(1\)"
    ):
        PADetHead(input_shape=_shapes(1, 4), num_classes=2, num_anchors=[2, 2])


def test_feature_alignment_argument_errors_and_default():
    from semianchor.modeling.heads.padet_head import FeatureAlignment

    assert FeatureAlignment(4, 2).grad_mul == 0.0  # detached APM by default (Guided Anchoring)
    with pytest.raises(ValueError, match="FAM impl must be one of .*got 'cuda'"):
        FeatureAlignment(4, 2, impl="cuda")
    with pytest.raises(ValueError, match=r"FAM grad_mul must be in \[0, 1\], got 1.5"):
        FeatureAlignment(4, 2, grad_mul=1.5)
    with pytest.raises(ValueError, match="FAM mode 'location' needs the APM deltas"):
        FeatureAlignment(4, 2, "location").offsets(torch.zeros(1, 4, 2, 2), None)


def _fam(mode="disentangled", A=2, C=4, seed=0, **kwargs):
    """A FAM whose zero-initialised offset convs get random weights (offsets != 0)."""
    from semianchor.modeling.heads.padet_head import FeatureAlignment

    torch.manual_seed(seed)
    fam = FeatureAlignment(C, A, mode, **kwargs)
    with torch.no_grad():
        for name in ("f_loc", "g_shape"):
            if hasattr(fam, name):
                getattr(fam, name).weight.normal_(std=0.3)
                getattr(fam, name).bias.normal_(std=0.3)
    return fam


@pytest.mark.parametrize("grad_mul", [0.0, 0.5, 1.0])
def test_fam_disentangled_offsets_values_and_apm_gradient(grad_mul):
    """Offsets = F(X_l) broadcast to the 9 taps + G(X_s), whatever share of the gradient
    (``grad_mul``) flows back into the APM deltas."""
    fam = _fam(grad_mul=grad_mul)
    g = torch.Generator().manual_seed(1)
    apm_reg = torch.randn(1, 8, 3, 3, generator=g, requires_grad=True)
    offsets = fam.offsets(torch.zeros(1, 4, 3, 3), apm_reg)
    reg = apm_reg.detach().view(1, 2, 4, 3, 3)
    x_l, x_s = reg[:, :, :2].reshape(1, 4, 9), reg[:, :, 2:].reshape(1, 4, 9)
    f = fam.f_loc.weight[:, :, 0, 0] @ x_l + fam.f_loc.bias[:, None]  # (1, 2, 9)
    expected = f.repeat(1, 9, 1) + fam.g_shape.weight[:, :, 0, 0] @ x_s + fam.g_shape.bias[:, None]
    torch.testing.assert_close(offsets.detach(), expected.detach().view(1, 18, 3, 3))
    offsets.sum().backward()
    full = torch.autograd.grad(
        _fam(grad_mul=1.0).offsets(torch.zeros(1, 4, 3, 3), apm_reg).sum(), apm_reg
    )[0]
    torch.testing.assert_close(apm_reg.grad, grad_mul * full)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fam_forward_matches_torchvision_in_float32(dtype):
    """The deformable conv runs in float32 (never under autocast), whatever the module's dtype."""
    from torchvision.ops import deform_conv2d as tv_deform_conv2d

    fam = _fam(impl="sampled").to(dtype)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 5, 5, generator=g).to(dtype)
    apm_reg = torch.randn(1, 8, 5, 5, generator=g).to(dtype)
    y = fam(x, apm_reg)
    assert y.dtype == torch.float32
    offsets = fam.offsets(x, apm_reg).float()
    assert offsets.abs().max() > 0.1
    expected = tv_deform_conv2d(
        x.float(), offsets, fam.weight.float(), fam.bias.float(), padding=(1, 1)
    ).relu()
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_fam_passes_impl_to_deform_conv(monkeypatch):
    from semianchor.modeling.heads import padet_head

    seen, original = [], padet_head.deform_conv2d

    def recording(*args, impl, **kwargs):
        seen.append(impl)
        return original(*args, impl=impl, **kwargs)

    monkeypatch.setattr(padet_head, "deform_conv2d", recording)
    _fam(impl="torchvision")(torch.randn(1, 4, 3, 3), torch.randn(1, 8, 3, 3))
    assert seen == ["torchvision"]


@pytest.mark.parametrize("mode, stats_name", [("none", "fam4"), ("disentangled", None)])
def test_fam_logs_no_offset_stats_without_offsets_or_name(mode, stats_name):
    """Offset statistics come only from a named FAM that has offsets (not a plain-conv level)."""
    from detectron2.utils.events import EventStorage

    fam = _fam(mode).train()
    if stats_name is not None:  # else the FAM's own default (a FAM outside a PADetHead)
        fam.stats_name = stats_name
    with EventStorage(0) as storage:
        fam(torch.randn(1, 4, 3, 3), torch.randn(1, 8, 3, 3)).sum().backward()
    assert not [k for k in storage.histories() if k.startswith("padet/")]
