"""The paper configs pin what their papers state: a drift of any of these values fails.

The table is written from the papers (and, where a paper is silent, from the choices recorded in
projects/<method>/DESIGN.md), not read from the configs. Sources:

* ATSS Sec. 4 "Implementation Details" (800 / 1333 px single scale, SGD 90K iterations, batch
  16, lr 0.01 x0.1 at 60K / 80K, momentum 0.9, weight decay 1e-4; one square 8S anchor; k = 9;
  test: score 0.05, top 1000 per level, NMS 0.6, 100 detections).
* DLA Sec. 4.1: ATSS's settings unchanged, k = 10, alpha0 = 0.9, gamma = 1, loss weights a = c = 1,
  b = 2; "The 1x and 2x training schedules follow the default settings in MMDetection".
* Noisy Anchors Sec. 5.1 (batch 8, 180K iterations, x0.1 at 120K / 160K, lr 0.005 RetinaNet /
  0.01 Faster R-CNN, momentum 0.9, weight decay 1e-4, 800 / 1333, flip), Table 3 / 4 (N = 50,
  alpha = 0.75, gamma = 1); its RetinaNet test settings are RetinaNet's (Lin et al. Sec. 5: score
  0.05, top 1000 per level, NMS 0.5, 100 detections; anchors 2^{0,1/3,2/3} x {32..512}, ratios
  {1:2, 1:1, 2:1}).
* SAD Sec. 4 (90k iterations, lr 0.01, batch 16, x0.1 at 60k / 80k,
  weight decay 1e-4, momentum 0.9, flip only, 800 px; A = 5 scales x 5 ratios on RetinaNet's
  4 x stride base (S1); focal (alpha, gamma) = (0.25, 1); lambda_reg = 2 (-ln IoU), lambda_ac = 1
  with the Eq. 3 loss (alpha, beta) = (0.25, 2), sigma = 0.9; max-IoU 0.5 without band (S2);
  top-1 anchor per location; test S11: 0.05, 1000 per level, NMS 0.4, 100).
* PADet Sec. 3 / 3.3 / 4 (square 384 / 512 inputs with SSD augmentation:
  flip, expansion, cropping; SSD anchors, 6 ratios (1, 1', 2, 3, 1/2, 1/3) on D1-D4 and 4
  (1, 1', 2, 1/2) on D5 / D6, 18,400 at 384; the last two maps 3x3 / 1x1 at 384 and 2x2 / 1x1 at
  512, where the FAM is not applied; matching 0.5 / 0.3 with each GT's best anchor; theta 0.01;
  BCE (APM) and softmax (detection) + smooth-L1, weights 1; SGD momentum 0.9, weight decay 5e-4,
  batch 32, lr 2e-3, warm-up from 1e-6 over 5 epochs, x0.1 at 100 and 140 epochs, 160 epochs on
  trainval35k; soft-NMS linear N_t = 0.3 (sigma 0.5), score 0.01, top 300). Hard-negative mining
  3:1 and smooth-L1 beta 1 are our choices P6 / P10 (projects/PADet/DESIGN.md; the text is silent).
* FCOS and RetinaNet: their papers' 1x as Detectron2 ships it (90k / 60k / 80k at batch 16, lr
  0.01, 800 / 1333, Detectron2's test settings: FCOS gates sqrt(p x centerness) at 0.2, NMS 0.6;
  RetinaNet 0.05, NMS 0.5; smooth-L1 beta 0.1 as Detectron2's yacs RetinaNet).

Warm-up (iterations at our batch, start factor, linear): PADet's is in its text (5 epochs from
1e-6: factor 1e-6 / 2e-3). SAD's is maskrcnn-benchmark's default (500 iterations from 1/3;
SAD Sec. 4: SAD "is implemented within a public codebase", maskrcnn-benchmark by its footnote,
and keeps "all other settings ... as in the standard RetinaNet"). DLA's is MMDetection's 1x
default (500 iterations from 0.001). ATSS and Noisy Anchors do not state one: Detectron2's 1x
default (1000 iterations from 0.001) is our choice, pinned so that it cannot drift; FCOS and
RetinaNet have Detectron2's by definition. Our batch 16 keeps a paper's images per epoch and lr
per image (linear scaling): solver values are pinned as images and lr per image.
"""

import inspect
import os

import pytest
import torch

from detectron2.config import LazyConfig, instantiate

from .conftest import REPO

COCO_TRAIN_IMAGES = 117_266  # trainval35k = COCO 2017 train; 1,021 of its 118,287 have no box

ATSS_ANCHORS = dict(sizes=[[64], [128], [256], [512], [1024]], aspect_ratios=[1.0])
RETINA_ANCHORS = dict(
    sizes=[[s * 2 ** (i / 3) for i in range(3)] for s in (32, 64, 128, 256, 512)],
    aspect_ratios=[0.5, 1.0, 2.0],
)
SAD_ANCHORS = dict(  # choice S1: 4 x stride base, 2^(i/5), ratios {1/3, 1/2, 1, 2, 3}
    sizes=[[4 * s * 2 ** (i / 5) for i in range(5)] for s in (8, 16, 32, 64, 128)],
    aspect_ratios=[[1 / 3, 1 / 2, 1.0, 2.0, 3.0]],
)
COCO_1X = dict(
    lr_per_image=0.01 / 16,
    images=90000 * 16,
    step_images=[60000 * 16, 80000 * 16],
    momentum=0.9,
    weight_decay=1e-4,
)
NOISY_1X = dict(COCO_1X, images=180000 * 8, step_images=[120000 * 8, 160000 * 8])
PADET_SOLVER = dict(
    lr_per_image=2e-3 / 32,
    batch=32,
    images=160 * COCO_TRAIN_IMAGES,
    step_images=[100 * COCO_TRAIN_IMAGES, 140 * COCO_TRAIN_IMAGES],
    momentum=0.9,
    weight_decay=5e-4,
)
D2_WARMUP = dict(images=1000 * 16, factor=0.001)  # Detectron2's 1x
MMDET_WARMUP = dict(images=500 * 16, factor=0.001)  # MMDetection's schedule_1x (batch 16)
MASKRCNN_BENCHMARK_WARMUP = dict(images=500 * 16, factor=1 / 3)  # its defaults.py (batch 16)
PADET_WARMUP = dict(images=5 * COCO_TRAIN_IMAGES, factor=1e-6 / 2e-3)

FOCAL = {"focal_loss_alpha": 0.25, "focal_loss_gamma": 2.0}
ATSS_TEST = {
    "test_score_thresh": 0.05,
    "test_topk_candidates": 1000,
    "test_nms_thresh": 0.6,
    "max_detections_per_image": 100,
}
RETINA_TEST = dict(ATSS_TEST, test_nms_thresh=0.5)
SAD_MODEL = {
    "focal_loss_alpha": 0.25,
    "focal_loss_gamma": 1.0,
    "box_loss_type": "log_iou",
    "box_loss_weight": 2.0,
    "ac_loss": "eq3",
    "ac_loss_weight": 1.0,
    "ac_alpha": 0.25,
    "ac_beta": 2.0,
    "assigner.sigma": 0.9,
    "assigner.location_gamma": None,  # Eq. 4
    "assigner.matcher.thresholds": [0.5],  # S2
    "assigner.matcher.labels": [0, 1],
    "assigner.matcher.allow_low_quality_matches": True,
    "assigner.regression": "anchor",  # S4 (R1)
    "assigner.ac_iou_threshold": 0.5,  # S8
    "box_coder.weights": [10.0, 10.0, 5.0, 5.0],  # S7
    "inference": "top1",
    "test_score_thresh": 0.05,
    "test_topk_candidates": 1000,
    "test_nms_thresh": 0.4,
    "max_detections_per_image": 100,
    "head.num_anchors": 25,
    "head.norm": "GN",
    "backbone.top_block.in_feature": "p5",  # P6 / P7 from P5 (the FCOS configuration)
}
PADET_MODEL = {
    "promote": True,
    "theta": 0.01,
    "assigner.stages.0.1.thresholds": [0.3, 0.5],  # APM: initial anchors
    "assigner.stages.0.1.labels": [0, -1, 1],
    "assigner.stages.0.1.allow_low_quality_matches": True,  # each GT's best anchor
    "assigner.stages.1.1.thresholds": [0.3, 0.5],  # detection module: promoted anchors
    "assigner.stages.1.1.labels": [0, -1, 1],
    "assigner.stages.1.1.allow_low_quality_matches": True,
    "assigner.stages.1.1.promote": True,
    "assigner.stages.1.1.theta": 0.01,
    "classification_loss": "softmax_ce",
    "box_loss_type": "smooth_l1",
    "smooth_l1_beta": 1.0,  # P10
    "apm_loss_weight": 1.0,
    "neg_pos_ratio": 3.0,  # P6
    "apm_neg_pos_ratio": 3.0,
    "soft_nms.method": "linear",
    "soft_nms.iou_threshold": 0.3,
    "soft_nms.sigma": 0.5,
    "test_score_thresh": 0.01,
    "max_detections_per_image": 300,
    "head.fam_mode": "disentangled",  # Table 1 (c)
    "head.apm_scoring": True,
    "head.apm_adjustment": True,
    "box_coder.weights": [10.0, 10.0, 5.0, 5.0],  # SSD variances (0.1, 0.2), inferred (P13)
}
PADET_RATIOS_6, PADET_RATIOS_4 = [1.0, 2.0, 3.0, 1 / 2, 1 / 3], [1.0, 2.0, 1 / 2]  # + 1'

ATSS_PAPER = dict(
    input="800",
    ms_twin=True,
    solver=COCO_1X,
    warmup=D2_WARMUP,
    anchors=ATSS_ANCHORS,
    model=dict(ATSS_TEST, **FOCAL, **{"assigner.topk": 9}),
)

PAPER = {
    "atss_R_50_FPN_1x.py": ATSS_PAPER,
    "atss_anchor_free_R_50_FPN_1x.py": ATSS_PAPER,  # the same paper row, anchor-free box coder
    "dla_R_50_FPN_1x.py": dict(
        input="800",
        ms_twin=True,
        solver=COCO_1X,
        warmup=MMDET_WARMUP,
        anchors=ATSS_ANCHORS,
        model=dict(
            ATSS_TEST,
            **FOCAL,
            alpha0=0.9,
            box_loss_weight=2.0,
            metric_loss_weight=1.0,
            **{"assigner.topk": 10, "assigner.gamma": 1.0},
        ),
    ),
    "noisy_anchor_retinanet_R_50_FPN_1x.py": dict(
        input="800",
        ms_twin=True,
        solver=dict(NOISY_1X, lr_per_image=0.005 / 8),
        warmup=D2_WARMUP,
        anchors=RETINA_ANCHORS,
        model=dict(
            RETINA_TEST,
            **FOCAL,
            **{"assigner.topn": 50, "assigner.alpha": 0.75, "assigner.gamma": 1.0},
        ),
    ),
    "noisy_anchor_faster_rcnn_R_50_FPN_1x.py": dict(
        input="800",
        ms_twin=True,
        solver=dict(NOISY_1X, lr_per_image=0.01 / 8),
        warmup=D2_WARMUP,
    ),
    "sad_R_50_FPN_1x.py": dict(
        input="800",
        ms_twin=False,  # the paper's multi-scale runs are its 2x test-dev models: not shipped
        solver=COCO_1X,
        warmup=MASKRCNN_BENCHMARK_WARMUP,
        anchors=SAD_ANCHORS,
        model=SAD_MODEL,
    ),
    "fcos_R_50_FPN_1x.py": dict(
        input="800",
        ms_twin=True,
        solver=COCO_1X,
        warmup=D2_WARMUP,
        model=dict(
            FOCAL,
            test_score_thresh=0.2,  # on sqrt(p_cls x centerness) (Detectron2's FCOS)
            test_topk_candidates=1000,
            test_nms_thresh=0.6,
            max_detections_per_image=100,
            **{"head.norm": "GN", "backbone.top_block.in_feature": "p5"},
        ),
    ),
    "retinanet_R_50_FPN_1x.py": dict(
        input="800",
        ms_twin=True,
        solver=COCO_1X,
        warmup=D2_WARMUP,
        anchors=RETINA_ANCHORS,
        model=dict(
            RETINA_TEST,
            **FOCAL,
            smooth_l1_beta=0.1,
            **{
                "anchor_matcher.thresholds": [0.4, 0.5],  # IoU >= 0.5 fg, < 0.4 bg (Sec. 4)
                "anchor_matcher.labels": [0, -1, 1],
                "head.num_anchors": 9,
                "backbone.top_block.in_channels": 2048,  # P6 from C5
            },
        ),
    ),
}
# PADet: the SSD recipe at a square input (no 800 px / multi-scale twin: SSD's augmentation and
# a fixed square warp replace Detectron2's shortest-edge resizing, so those two tests skip it)
for _name, _size, _encoder in (
    ("padet_VGG16_384.py", 384, "VGG16Encoder"),
    ("padet_VGG16_512.py", 512, "VGG16Encoder"),
    ("padet_R101_384.py", 384, "ResNetEncoder"),
    ("padet_R101_512.py", 512, "ResNetEncoder"),
):
    PAPER[_name] = dict(
        input=_size,
        ms_twin=False,
        solver=PADET_SOLVER,
        warmup=PADET_WARMUP,
        model=PADET_MODEL,
        encoder=_encoder,
    )


def _load(name):
    return LazyConfig.load(os.path.join(REPO, "configs", "COCO-Detection", name))


def _value(node, dotted):
    """A (dotted) argument of a LazyCall config: its value, or the callable's default when the
    config leaves it out (e.g. Detectron2's FCOS test_topk_candidates)."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if leaf in node:
        return node[leaf]
    default = inspect.signature(node["_target_"]).parameters[leaf].default
    assert default is not inspect.Parameter.empty, f"{dotted} is neither set nor defaulted"
    return default


@pytest.mark.parametrize("name", sorted(n for n in PAPER if PAPER[n]["input"] == "800"))
def test_single_scale_800_1333_with_flip(name):
    cfg = _load(name)
    train_augs = cfg.dataloader.train.mapper.augmentations
    assert len(train_augs) == 2
    assert train_augs[0].short_edge_length == 800 and train_augs[0].max_size == 1333
    assert train_augs[1].horizontal is True
    (test_aug,) = cfg.dataloader.test.mapper.augmentations
    assert test_aug.short_edge_length == 800 and test_aug.max_size == 1333


@pytest.mark.parametrize("name", sorted(n for n in PAPER if PAPER[n]["ms_twin"]))
def test_multi_scale_variant_differs_only_by_the_training_scales(name):
    single, ms = _load(name), _load(name.replace(".py", "_ms.py"))
    assert list(ms.dataloader.train.mapper.augmentations[0].short_edge_length) == list(
        range(640, 801, 32)
    )
    ms.dataloader.train.mapper.augmentations = single.dataloader.train.mapper.augmentations
    ms.train.output_dir = single.train.output_dir
    for key in ("model", "dataloader", "optimizer", "train"):
        assert LazyConfig.to_py(ms[key]) == LazyConfig.to_py(single[key]), key


@pytest.mark.parametrize("name", sorted(PAPER))
def test_solver_is_the_papers(name):
    cfg, paper = _load(name), PAPER[name]["solver"]
    batch = cfg.dataloader.train.total_batch_size
    if "batch" in paper:
        assert batch == paper["batch"]
    assert cfg.optimizer.lr / batch == pytest.approx(paper["lr_per_image"])
    assert cfg.optimizer.momentum == paper["momentum"]
    assert cfg.optimizer.weight_decay == paper["weight_decay"]
    # images -> iterations at our batch (PADet's epochs are not a whole number of batches)
    assert cfg.train.max_iter == round(paper["images"] / batch)
    milestones = list(cfg.lr_multiplier.scheduler.milestones)
    assert milestones[:2] == [round(s / batch) for s in paper["step_images"]]
    assert milestones[2] == cfg.train.max_iter
    assert list(cfg.lr_multiplier.scheduler["values"])[:3] == [1.0, 0.1, 0.01]


@pytest.mark.parametrize("name", sorted(PAPER))
def test_warmup_is_the_papers(name):
    """Linear from ``factor`` x lr over ``images`` (module docstring for where each comes from)."""
    cfg, paper = _load(name), PAPER[name]["warmup"]
    batch = cfg.dataloader.train.total_batch_size
    sched = cfg.lr_multiplier
    assert sched.warmup_method == "linear"
    assert sched.warmup_factor == pytest.approx(paper["factor"])
    iterations = sched.warmup_length * cfg.train.max_iter  # a fraction of training
    assert iterations == pytest.approx(paper["images"] / batch, rel=1e-9)


@pytest.mark.parametrize("name", sorted(n for n in PAPER if "model" in PAPER[n]))
def test_model_is_the_papers(name):
    model = _load(name).model
    for key, value in PAPER[name]["model"].items():
        got = _value(model, key)
        got = list(got) if hasattr(got, "__len__") and not isinstance(got, str) else got
        assert got == (pytest.approx(value) if isinstance(value, float) else value), key


@pytest.mark.parametrize("name", sorted(n for n in PAPER if "anchors" in PAPER[n]))
def test_anchors_are_the_papers(name):
    gen, paper = _load(name).model.anchor_generator, PAPER[name]["anchors"]
    assert [[pytest.approx(s) for s in level] for level in paper["sizes"]] == list(gen.sizes)
    ratios = [list(r) if hasattr(r, "__len__") else r for r in gen.aspect_ratios]
    assert ratios == [pytest.approx(r) for r in paper["aspect_ratios"]]


# ---------------------------------------------------------------- PADet's SSD recipe
PADET = sorted(n for n in PAPER if n.startswith("padet"))


def type_name(node):
    return node["_target_"].__name__


@pytest.mark.parametrize("name", PADET)
def test_padet_input_is_ssd_augmentation_at_a_square_size(name):
    """Train: SSD's photometric distortion, expansion and min-IoU cropping, then the square warp
    and a horizontal flip; test: the square warp only (by the mapper, and by the model for inputs
    that did not come through it, e.g. DefaultPredictor's). trainval35k / minival = COCO 2017
    train / val."""
    cfg, size = _load(name), PAPER[name]["input"]
    names = [type_name(a) for a in cfg.dataloader.train.mapper.augmentations]
    assert names == ["PhotometricDistortion", "Expand", "MinIoURandomCrop", "Resize", "RandomFlip"]
    augs = cfg.dataloader.train.mapper.augmentations
    assert list(augs[3].shape) == [size, size] and augs[4].horizontal is True
    (test_aug,) = cfg.dataloader.test.mapper.augmentations
    assert type_name(test_aug) == "Resize" and list(test_aug.shape) == [size, size]
    assert tuple(cfg.model.test_input_size) == (size, size)
    assert cfg.dataloader.train.dataset.names == "coco_2017_train"
    assert cfg.dataloader.test.dataset.names == "coco_2017_val"


@pytest.mark.parametrize("name", PADET)
def test_padet_levels_anchors_and_fam_levels_are_the_papers(name):
    """SSD priors: 6 per location (1, 1', 2, 3, 1/2, 1/3) on D1-D4, 4 (1, 1', 2, 1/2) on the rest;
    18,400 anchors at 384; the last two maps 3x3 / 1x1 at 384 and 2x2 / 1x1 at 512; no FAM on
    them. The layout comes from running the config's backbone (shrunk: width 1/8 for VGG-16; a
    ResNet's strides do not depend on its depth, so R-18 stands in for R-101)."""
    cfg, size = _load(name), PAPER[name]["input"]
    model = cfg.model
    assert model.backbone.encoder._target_.__name__ == PAPER[name]["encoder"]
    if PAPER[name]["encoder"] == "VGG16Encoder":
        model.backbone.encoder.width = 0.125
    else:
        model.backbone.encoder.update(depth=18, norm="BN", width=0.125)
    model.backbone.channels = 16
    backbone = instantiate(model.backbone).eval()
    with torch.no_grad():
        feats = backbone(torch.zeros(1, 3, size, size))
    feats = [feats[k] for k in model.head_in_features]
    sides = [f.shape[-1] for f in feats]
    assert sides[-2:] == ([3, 1] if size == 384 else [2, 1])
    gen = instantiate(model.anchor_generator)
    levels = len(feats)
    assert gen.num_cell_anchors == [6] * 4 + [4] * (levels - 4)
    ratios = [[pytest.approx(r) for r in level] for level in model.anchor_generator.aspect_ratios]
    assert ratios == [PADET_RATIOS_6] * 4 + [PADET_RATIOS_4] * (levels - 4)
    num_anchors = sum(len(a) for a in gen(feats))
    if size == 384:
        assert levels == 6 and num_anchors == 18400  # "the total anchors are 18400"
    assert list(model.head.num_anchors) == gen.num_cell_anchors
    assert model.head.fam_levels == levels - 2  # "we do not apply the FAM to the last 2 layers"


@pytest.mark.parametrize("name", sorted(set(PADET) - {"padet_VGG16_384.py"}))
def test_padet_twins_keep_the_384_vgg_recipe(name):
    """The 512 and R-101 configs change only the input size / layout and the encoder (with its
    ImageNet weights and pixel normalisation) of padet_VGG16_384.py."""
    base, cfg = _load("padet_VGG16_384.py"), _load(name)
    for key in ("optimizer", "lr_multiplier"):
        assert LazyConfig.to_py(cfg[key]) == LazyConfig.to_py(base[key]), key
    assert cfg.train.max_iter == base.train.max_iter
    for key in PADET_MODEL:
        assert _value(cfg.model, key) == _value(base.model, key), key


@pytest.mark.parametrize(
    "name",
    [
        "ATSS_R_50_FPN_1x.yaml",
        "ATSS_anchor_free_R_50_FPN_1x.yaml",
        "DLA_R_50_FPN_1x.yaml",
        "NoisyAnchor_RetinaNet_R_50_FPN_1x.yaml",
        "NoisyAnchor_FasterRCNN_R_50_FPN_1x.yaml",
        "SAD_R_50_FPN_1x.yaml",
    ],
)
def test_yacs_twins_train_at_one_scale(name):
    from detectron2.config import get_cfg

    from semianchor.config import add_semianchor_config

    cfg = add_semianchor_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, "configs", "yacs", name))
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (800,) and cfg.INPUT.MAX_SIZE_TRAIN == 1333
    assert cfg.INPUT.MIN_SIZE_TEST == 800 and cfg.INPUT.MAX_SIZE_TEST == 1333


@pytest.mark.parametrize(
    "name, lazy",
    [
        ("ATSS_R_50_FPN_1x.yaml", "atss_R_50_FPN_1x.py"),
        ("ATSS_anchor_free_R_50_FPN_1x.yaml", "atss_anchor_free_R_50_FPN_1x.py"),
        ("DLA_R_50_FPN_1x.yaml", "dla_R_50_FPN_1x.py"),
        ("NoisyAnchor_RetinaNet_R_50_FPN_1x.yaml", "noisy_anchor_retinanet_R_50_FPN_1x.py"),
        ("NoisyAnchor_FasterRCNN_R_50_FPN_1x.yaml", "noisy_anchor_faster_rcnn_R_50_FPN_1x.py"),
        ("SAD_R_50_FPN_1x.yaml", "sad_R_50_FPN_1x.py"),
    ],
)
def test_yacs_twins_warm_up_as_the_paper(name, lazy):
    from detectron2.config import get_cfg

    from semianchor.config import add_semianchor_config

    cfg = add_semianchor_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, "configs", "yacs", name))
    warmup = PAPER[lazy]["warmup"]
    assert cfg.SOLVER.WARMUP_METHOD == "linear"
    assert cfg.SOLVER.WARMUP_FACTOR == pytest.approx(warmup["factor"])
    assert cfg.SOLVER.WARMUP_ITERS * cfg.SOLVER.IMS_PER_BATCH == warmup["images"]
