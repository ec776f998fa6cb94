"""The quickstart model is one recipe, ``semianchor.model_zoo.shrink_to_quickstart``: a quickstart
config is its COCO config after the recipe plus the changes the config names, nothing else."""

import pytest

from detectron2.config import LazyConfig

from semianchor import model_zoo
from semianchor.model_zoo import shrink_to_quickstart, shrink_yacs_to_quickstart


def _model_py(model):
    return LazyConfig.to_py(model, prefix="model.")


@pytest.mark.parametrize(
    "method, own_changes",
    [
        ("atss", {"anchor_generator.sizes"}),
        ("retinanet", {"anchor_generator.sizes", "head.norm"}),
        ("noisy_anchor_retinanet", {"anchor_generator.sizes", "head.norm"}),
        (
            "dla",
            {"anchor_generator.sizes", "head.regression_activation", "iters_per_epoch", "max_iter"},
        ),
        ("sad", {"anchor_generator.sizes"}),
    ],
)
def test_quickstart_model_is_the_coco_model_after_the_recipe(method, own_changes):
    quick = model_zoo.get_config(f"quickstart/{method}_R18_shapes.py").model
    coco = shrink_to_quickstart(
        model_zoo.get_config(f"COCO-Detection/{method}_R_50_FPN_1x.py").model
    )
    assert coco.backbone.bottom_up.stages.depth == 18 and coco.backbone.out_channels == 64
    for key in own_changes:  # what the quickstart config sets itself, copied over
        *parents, leaf = key.split(".")
        src, dst = quick, coco
        for p in parents:
            src, dst = src[p], dst[p]
        dst[leaf] = src[leaf]
    assert _model_py(coco) == _model_py(quick)


def test_test_size_variant():
    model = model_zoo.get_config("COCO-Detection/atss_R_50_FPN_1x.py").model
    pixel_std = list(model.pixel_std)
    shrink_to_quickstart(model, num_classes=3, head_convs=2, pixel_std=None)
    assert model.head.conv_dims == [64, 64] and model.num_classes == 3
    assert list(model.pixel_std) == pixel_std


def test_faster_rcnn_gets_64_channel_rpn_and_box_heads():
    model = model_zoo.get_config("COCO-Detection/noisy_anchor_faster_rcnn_R_50_FPN_1x.py").model
    shrink_to_quickstart(model)
    assert model.proposal_generator.head.in_channels == 64
    assert model.roi_heads.box_head.fc_dims == [64, 64] and model.roi_heads.num_classes == 4
    assert model.backbone.bottom_up.out_features == ["res2", "res3", "res4", "res5"]


def test_yacs_twin_matches_the_yacs_quickstart_config():
    cfg = model_zoo.get_config("yacs/ATSS_R_50_FPN_1x.yaml")
    shrink_yacs_to_quickstart(cfg)
    shipped = model_zoo.get_config("yacs/ATSS_R18_shapes.yaml")
    for key in ("RESNETS.DEPTH", "RESNETS.NORM", "BACKBONE.FREEZE_AT", "FPN.OUT_CHANNELS"):
        section, leaf = key.split(".")
        assert cfg.MODEL[section][leaf] == shipped.MODEL[section][leaf], key
    assert list(cfg.MODEL.PIXEL_STD) == list(shipped.MODEL.PIXEL_STD)
    assert cfg.MODEL.SEMIANCHOR.NUM_CLASSES == shipped.MODEL.SEMIANCHOR.NUM_CLASSES


def test_a_config_without_a_resnet_fpn_is_an_error():
    model = model_zoo.get_config("COCO-Detection/padet_VGG16_384.py").model
    with pytest.raises(ValueError, match="needs a ResNet-FPN model config"):
        shrink_to_quickstart(model)
