"""The paper configs pin what their papers state: a drift of any of these values fails.

The table is written from the papers (/work/shared/papers, METHODS.md), not read from the configs.
Sources: ATSS Sec. 4 "Implementation Details" (800 / 1333 px single scale, SGD 90K iterations,
batch 16, lr 0.01 x0.1 at 60K / 80K, momentum 0.9, weight decay 1e-4; one square 8S anchor; k = 9;
test: score 0.05, top 1000 per level, NMS 0.6, 100 detections). DLA Sec. 4: ATSS's settings
unchanged, k = 10, alpha0 = 0.9, gamma = 1, loss weights a = c = 1, b = 2. Noisy Anchors Sec. 5.1
(batch 8, 180K iterations, x0.1 at 120K / 160K, lr 0.005 RetinaNet / 0.01 Faster R-CNN, momentum
0.9, weight decay 1e-4, 800 / 1333, flip), Table 3 / 4 (N = 50, alpha = 0.75, gamma = 1); its
RetinaNet test settings are RetinaNet's (Lin et al. Sec. 5: score 0.05, top 1000 per level,
NMS 0.5, 100 detections; anchors 2^{0,1/3,2/3} x {32..512}, ratios {1:2, 1:1, 2:1}). Our batch 16
keeps a paper's images per epoch and lr per image (linear scaling): pinned as products.
"""

import os

import pytest

from detectron2.config import LazyConfig

from .conftest import REPO

ATSS_ANCHORS = dict(sizes=[[64], [128], [256], [512], [1024]], aspect_ratios=[1.0])
RETINA_ANCHORS = dict(
    sizes=[[s * 2 ** (i / 3) for i in range(3)] for s in (32, 64, 128, 256, 512)],
    aspect_ratios=[0.5, 1.0, 2.0],
)
ATSS_SOLVER = dict(lr_per_image=0.01 / 16, images=90000 * 16, step_images=[60000 * 16, 80000 * 16])
ATSS_TEST = dict(
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.6,
    max_detections_per_image=100,
)
RETINA_TEST = dict(ATSS_TEST, test_nms_thresh=0.5)

PAPER = {
    "atss_R_50_FPN_1x.py": dict(
        anchors=ATSS_ANCHORS,
        solver=ATSS_SOLVER,
        model=ATSS_TEST,
        assigner=dict(topk=9),
        focal=(0.25, 2.0),
    ),
    "atss_anchor_free_R_50_FPN_1x.py": dict(
        anchors=ATSS_ANCHORS,
        solver=ATSS_SOLVER,
        model=ATSS_TEST,
        assigner=dict(topk=9),
        focal=(0.25, 2.0),
    ),
    "dla_R_50_FPN_1x.py": dict(
        anchors=ATSS_ANCHORS,
        solver=ATSS_SOLVER,
        model=dict(ATSS_TEST, alpha0=0.9, box_loss_weight=2.0, metric_loss_weight=1.0),
        assigner=dict(topk=10, gamma=1.0),
        focal=(0.25, 2.0),
    ),
    "noisy_anchor_retinanet_R_50_FPN_1x.py": dict(
        anchors=RETINA_ANCHORS,
        solver=dict(
            lr_per_image=0.005 / 8, images=180000 * 8, step_images=[120000 * 8, 160000 * 8]
        ),
        model=RETINA_TEST,
        assigner=dict(topn=50, alpha=0.75, gamma=1.0),
        focal=(0.25, 2.0),
    ),
    "noisy_anchor_faster_rcnn_R_50_FPN_1x.py": dict(
        solver=dict(lr_per_image=0.01 / 8, images=180000 * 8, step_images=[120000 * 8, 160000 * 8]),
    ),
}


def _load(name):
    return LazyConfig.load(os.path.join(REPO, "configs", "COCO-Detection", name))


@pytest.mark.parametrize("name", sorted(PAPER))
def test_single_scale_800_1333_with_flip(name):
    cfg = _load(name)
    train_augs = cfg.dataloader.train.mapper.augmentations
    assert len(train_augs) == 2
    assert train_augs[0].short_edge_length == 800 and train_augs[0].max_size == 1333
    assert train_augs[1].horizontal is True
    (test_aug,) = cfg.dataloader.test.mapper.augmentations
    assert test_aug.short_edge_length == 800 and test_aug.max_size == 1333


@pytest.mark.parametrize("name", sorted(PAPER))
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
    assert cfg.optimizer.lr / batch == pytest.approx(paper["lr_per_image"])
    assert cfg.optimizer.momentum == 0.9 and cfg.optimizer.weight_decay == 1e-4
    assert cfg.train.max_iter * batch == paper["images"]
    milestones = list(cfg.lr_multiplier.scheduler.milestones)
    assert [m * batch for m in milestones[:2]] == paper["step_images"]
    assert list(cfg.lr_multiplier.scheduler["values"])[:3] == [1.0, 0.1, 0.01]


@pytest.mark.parametrize("name", sorted(n for n in PAPER if "anchors" in PAPER[n]))
def test_model_is_the_papers(name):
    cfg, paper = _load(name), PAPER[name]
    model = cfg.model
    gen = model.anchor_generator
    assert [[pytest.approx(s) for s in level] for level in paper["anchors"]["sizes"]] == list(
        gen.sizes
    )
    assert list(gen.aspect_ratios) == paper["anchors"]["aspect_ratios"]
    for key, value in paper["assigner"].items():
        assert model.assigner[key] == value, key
    assert (model.focal_loss_alpha, model.focal_loss_gamma) == paper["focal"]
    for key, value in paper["model"].items():
        assert model[key] == value, key


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
