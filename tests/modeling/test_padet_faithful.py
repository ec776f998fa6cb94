"""PADet as the paper writes it: the paper-literal loss (Sec. 3.3, no hard-negative mining, each
module / its positive count of the step) beside the mined default, the promotion statistics it
logs, the warning for an ImageNet-made config that runs without its weights, and the converter
of torchvision's ImageNet VGG-16 / ResNet-101 weights to the encoder's names."""

import os

import pytest
import torch
import torch.nn.functional as F

from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec
from detectron2.utils.events import EventStorage

from semianchor.modeling.assigners import MaxIoUAssigner, StagedAssigner
from semianchor.modeling.assigners.padet import PromotedAnchorAssigner
from semianchor.modeling.backbone.encoder_decoder import ResNetEncoder

from .conftest import REPO, one_level_inputs

K = 3


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/modeling/conftest.py


def _tiny_padet(**switches):
    cfg = LazyConfig.load(os.path.join(REPO, "configs/common/models/padet.py"))
    cfg.model.backbone.encoder = dict(_target_=ResNetEncoder, depth=18, num_extra=2, width=0.125)
    cfg.model.backbone.channels = 32
    cfg.model.head.input_shape = [ShapeSpec(channels=32)] * 6
    cfg.model.num_classes = K
    for key, value in switches.items():
        cfg.model[key] = value
    torch.manual_seed(0)
    return instantiate(cfg.model)


PAPER = dict(loss_mode="paper", neg_pos_ratio=0.0, apm_neg_pos_ratio=0.0)

# ---------------------------------------------------------------- the hand case
# One GT [0, 0, 20, 20]; 12 anchors, the APM leaves them where they are (zero deltas):
#   anchor 0 = the GT (positive in both matchings), anchor 1 10 px right (IoU 1/3: the [0.3, 0.5)
#   band, ignored), anchors 2-11 far away (negatives). APM scores: 4 of the 10 negatives (2, 5, 8,
#   11) below theta = 0.01, so the detection module has 1 positive and 6 negatives left, the APM
#   (which theta does not filter) 1 positive and 10 negatives.
GT = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
ANCHORS = torch.cat(
    [
        torch.tensor([[0.0, 0.0, 20.0, 20.0], [10.0, 0.0, 30.0, 20.0]]),
        torch.stack([torch.tensor([50.0 + 25 * i, 50.0, 70.0 + 25 * i, 70.0]) for i in range(10)]),
    ]
)
APM_SCORES = torch.tensor([0.9, 0.5, 0.001, 0.3, 0.2, 0.005, 0.4, 0.02, 0.009, 0.6, 0.7, 0.0])
THETA_IGNORED = [2, 5, 8, 11]
DET_NEGATIVES = [3, 4, 6, 7, 9, 10]
APM_NEGATIVES = list(range(2, 12))


def _hand_case(num_gt=1):
    R = ANCHORS.shape[0]
    gts = GT if num_gt == 1 else torch.cat([GT, ANCHORS[9:10]])
    inputs = one_level_inputs(
        ANCHORS,
        gts[None],
        torch.ones(1, gts.shape[0], dtype=torch.long),
        torch.tensor([gts.shape[0]]),
        K,
        extras={"apm_regression": torch.zeros(1, R, 4), "apm_scores": APM_SCORES[None]},
    )
    assigner = StagedAssigner(
        stages=[
            ("initial", MaxIoUAssigner(thresholds=(0.3, 0.5), labels=(0, -1, 1))),
            ("promoted", PromotedAnchorAssigner(promote=True, theta=0.01)),
        ]
    )
    g = torch.Generator().manual_seed(1)
    preds = {
        "cls": torch.randn(1, R, K + 1, generator=g),
        "reg": torch.randn(1, R, 4, generator=g) * 0.1,
        "apm_cls": torch.randn(1, R, 1, generator=g),
        "apm_reg": torch.randn(1, R, 4, generator=g) * 0.1,
    }
    return inputs, assigner(inputs), preds


def _losses(model, num_gt=1):
    inputs, result, preds = _hand_case(num_gt)
    with EventStorage() as storage:
        model.log_assignment(inputs, result)
        losses = model.losses(inputs, preds, result)
        logged = {k: v[0] for k, v in storage.latest().items()}
    return inputs, result, preds, losses, logged


def test_hand_case_labels():
    _, result, _ = _hand_case()
    labels = result.labels[0].tolist()
    assert labels[0] == 1 and labels[1] == -1
    assert [i for i, v in enumerate(labels) if v == K] == DET_NEGATIVES
    assert [i for i, v in enumerate(labels) if v == -1] == [1] + THETA_IGNORED
    first = result.stages["initial"].labels[0].tolist()
    assert [i for i, v in enumerate(first) if v == K] == APM_NEGATIVES


def test_paper_loss_trains_on_every_negative_theta_leaves():
    """Detection CE over the positive + all 6 negatives theta leaves, APM BCE over the positive +
    all 10 negatives, each divided by this step's positive count (1), no EMA."""
    model = _tiny_padet(**PAPER)
    _, result, preds, losses, logged = _losses(model)
    ce = F.cross_entropy(preds["cls"][0], result.labels[0].clamp(min=0), reduction="none")
    det_used = [0] + DET_NEGATIVES
    assert torch.allclose(losses["loss_padet_cls"], ce[det_used].sum())
    target = torch.zeros(12)
    target[0] = 1.0
    bce = F.binary_cross_entropy_with_logits(preds["apm_cls"][0, :, 0], target, reduction="none")
    assert torch.allclose(losses["loss_padet_apm_cls"], bce[[0] + APM_NEGATIVES].sum())
    assert logged["padet/trained_neg_per_pos_det"] == 6
    assert logged["padet/trained_neg_per_pos_apm"] == 10
    assert logged["padet/trained_pos_det"] == 1 and logged["padet/trained_pos_apm"] == 1
    assert logged["padet/theta_ignored"] == 4
    assert logged["padet/theta_ignored_share"] == pytest.approx(4 / 10)
    assert logged["padet/loss_normalizer"] == 1.0  # N_det of this step
    assert logged["padet/loss_normalizer_apm"] == 1.0  # N_apm of this step
    # the next step divides by its own count (2 positives: anchor 0 and anchor 9's GT), no EMA
    _, _, _, losses2, logged2 = _losses(model, num_gt=2)
    assert logged2["padet/loss_normalizer"] == 2.0 and logged2["padet/loss_normalizer_apm"] == 2.0


def test_ohem_loss_keeps_three_negatives_per_positive():
    model = _tiny_padet()
    assert model.loss_mode == "ohem"
    _, result, preds, losses, logged = _losses(model)
    ce = F.cross_entropy(preds["cls"][0], result.labels[0].clamp(min=0), reduction="none")
    hardest = sorted(DET_NEGATIVES, key=lambda i: -float(ce[i]))[:3]
    normalizer = logged["padet/loss_normalizer"]  # the EMA
    assert normalizer != 1.0
    expected = ce[[0] + hardest].sum() / normalizer
    assert torch.allclose(losses["loss_padet_cls"], expected)
    assert logged["padet/trained_neg_per_pos_det"] == 3
    assert logged["padet/trained_neg_per_pos_apm"] == 3


def test_paper_loss_refuses_mining_ratios_and_an_ema():
    with pytest.raises(ValueError, match="neg_pos_ratio=0"):
        _tiny_padet(loss_mode="paper")
    with pytest.raises(ValueError, match="loss_normalizer_momentum must be 0"):
        _tiny_padet(**PAPER, loss_normalizer_momentum=0.9)
    with pytest.raises(ValueError, match="loss_mode"):
        _tiny_padet(loss_mode="none")


def test_yacs_paper_loss_mode():
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from semianchor.config import add_semianchor_config

    cfg = get_cfg()
    add_semianchor_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/yacs/PADet_VGG16_384.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.SEMIANCHOR.PADET.ENCODER_WIDTH = 0.125
    p = cfg.MODEL.SEMIANCHOR.PADET
    p.LOSS_MODE, p.NEG_POS_RATIO, p.APM_NEG_POS_RATIO = "paper", 0.0, 0.0
    model = build_model(cfg)
    assert model.loss_mode == "paper" and model.loss_normalizer_momentum == 0.0


# ---------------------------------------------------------------- ImageNet weights
IMAGENET_CONFIGS = [
    "configs/COCO-Detection/padet_VGG16_384.py",
    "configs/COCO-Detection/padet_VGG16_512.py",
    "configs/COCO-Detection/padet_R101_384.py",
    "configs/COCO-Detection/padet_R101_512.py",
    "projects/PADet/configs/table2_padet_baseline_VGG16_384.py",
]


@pytest.mark.parametrize("name", IMAGENET_CONFIGS)
def test_imagenet_config_without_weights_warns_at_start(name):
    from semianchor.engine.init_weights import warn_if_missing_init_weights

    cfg = LazyConfig.load(os.path.join(REPO, name))
    cfg.train.init_checkpoint = ""
    with pytest.warns(UserWarning, match="made for pretrained weights .*ImageNet"):
        assert warn_if_missing_init_weights(cfg) is not None
    assert warn_if_missing_init_weights(cfg, resuming=True) is None  # its own checkpoint
    cfg.train.init_checkpoint = "vgg16_imagenet_padet.pth"
    assert warn_if_missing_init_weights(cfg) is None


def test_from_scratch_configs_do_not_warn():
    from semianchor.engine.init_weights import missing_init_weights_message

    for name in (
        "configs/quickstart/padet_R18_shapes.py",
        "configs/quickstart/padet_R18_coco_json.py",
    ):
        cfg = LazyConfig.load(os.path.join(REPO, name))
        assert cfg.train.init_checkpoint == "" and missing_init_weights_message(cfg) is None


def test_training_tool_runs_the_check_before_loading_weights():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "lazyconfig_train_net", os.path.join(REPO, "tools/lazyconfig_train_net.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert "warn_if_missing_init_weights" in tool.do_train.__code__.co_names


def _converter():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "convert_imagenet_weights", os.path.join(REPO, "tools/convert_imagenet_weights.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _load_into_encoder(encoder, path):
    """The converted file through Detectron2's checkpointer into ``backbone.encoder``."""
    from detectron2.checkpoint import DetectionCheckpointer

    model = torch.nn.Module()
    model.backbone = torch.nn.Module()
    model.backbone.encoder = encoder
    info = DetectionCheckpointer(model).load(path)
    return info


def _torchvision_input(size=64):
    """A 0-255 RGB image, torchvision's normalised input and ours (BGR, mean / std x 255)."""
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(1, 3, size, size, generator=g) * 255
    mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None] * 255
    std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None] * 255
    return rgb, (rgb - mean) / std, mean


def test_convert_vgg16_fills_every_imagenet_tensor_and_conv_blocks_agree(tmp_path):
    import torchvision

    from semianchor.modeling.backbone.encoder_decoder import VGG16Encoder

    torch.manual_seed(0)
    vgg = torchvision.models.vgg16().eval()
    converted, overrides = _converter().convert("vgg16", vgg.state_dict())
    assert overrides == []
    out = tmp_path / "vgg16_padet.pth"
    torch.save({"model": converted}, out)
    encoder = VGG16Encoder(width=1.0, num_extra=3).eval()
    ours = {f"backbone.encoder.{k}": v for k, v in encoder.state_dict().items()}
    imagenet_part = {k for k in ours if ".extras." not in k}  # the extra blocks are new layers
    assert set(converted) == imagenet_part
    assert all(converted[k].shape == ours[k].shape for k in converted)
    _load_into_encoder(encoder, str(out))
    for k, v in encoder.state_dict().items():
        if not k.startswith("extras."):
            assert torch.equal(v, converted[f"backbone.encoder.{k}"]), k
    rgb, normalised, _ = _torchvision_input()
    with torch.no_grad():
        conv4_3 = vgg.features[:23](normalised)
        conv5_3 = vgg.features[23:30](conv4_3)
        e1 = encoder.to_conv4_3(normalised.flip(1))  # our input: BGR, the same normalisation
        ours5_3 = encoder.to_fc7[:7](e1)
    assert torch.allclose(e1, conv4_3, atol=1e-4, rtol=1e-4)
    assert torch.allclose(ours5_3, conv5_3, atol=1e-4, rtol=1e-4)
    fc6 = vgg.classifier[0].weight.view(4096, 512, 7, 7)
    assert torch.equal(encoder.to_fc7[8].weight, fc6[::4, :, ::3, ::3])  # SSD's reduced fc6
    assert torch.equal(encoder.to_fc7[10].weight[:, :, 0, 0], vgg.classifier[3].weight[::4, ::4])


def test_convert_resnet101_fills_every_encoder_tensor_and_stages_agree(tmp_path, capsys):
    import torchvision

    from semianchor.modeling.backbone.encoder_decoder import ResNetEncoder

    torch.manual_seed(0)
    net = torchvision.models.resnet101().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial BN statistics, so that the FrozenBN copy is checked
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    src, path = tmp_path / "r101.pth", tmp_path / "r101_padet.pth"
    torch.save(net.state_dict(), src)
    assert _converter().main(["resnet101", str(src), str(path)]) == 0  # the command line
    assert "model.backbone.encoder.stride_in_1x1=False" in capsys.readouterr().out
    converted = torch.load(path, weights_only=True)["model"]
    encoder = ResNetEncoder(depth=101, num_extra=2, norm="FrozenBN", stride_in_1x1=False).eval()
    ours = {f"backbone.encoder.{k}": v for k, v in encoder.state_dict().items()}
    assert set(converted) == {k for k in ours if ".extras." not in k}
    assert all(converted[k].shape == ours[k].shape for k in converted)
    _load_into_encoder(encoder, str(path))
    rgb, normalised, mean = _torchvision_input()
    with torch.no_grad():
        x = net.maxpool(net.relu(net.bn1(net.conv1(normalised))))
        c3 = net.layer2(net.layer1(x))
        c4 = net.layer3(c3)
        c5 = net.layer4(c4)
        feats = encoder.resnet((rgb - mean).flip(1))  # the R-101 configs: BGR, mean only
    for ours_f, theirs in ((feats["res3"], c3), (feats["res4"], c4), (feats["res5"], c5)):
        # random weights grow activations through 33 blocks: compare relative to their scale
        scale = float(theirs.abs().max())
        assert scale > 0 and float((ours_f - theirs).abs().max()) <= 1e-5 * scale


def test_converter_refuses_a_state_dict_that_is_not_torchvisions():
    tool = _converter()
    with pytest.raises(KeyError, match="features.0.weight"):
        tool.convert("vgg16", {"conv.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="unexpected torchvision ResNet parameter"):
        tool.convert(
            "resnet101", {"conv1.weight": torch.zeros(64, 3, 7, 7), "head.w": torch.zeros(1)}
        )
    with pytest.raises(ValueError, match="arch must be one of"):
        tool.convert("vgg19", {})
