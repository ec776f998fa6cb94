"""SAD's open choices made measurable: the "without AC" arm's random anchor drawn per image
(seeded by image and draw index) with a summary over N draws, the logged IoU after regression
of the positive locations' anchors (what R2 trains and R1 does not), and Table 3's FCOS /
FCOS-Shrink location labelling."""

import math
import os

import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

from semianchor.modeling.assigners import AssignInputs, SADAssigner
from semianchor.modeling.assigners.sad import fcos_location_labels
from semianchor.modeling.box_coder import DeltaBoxCoder
from semianchor.modeling.meta_arch.sad import noac_draw_seed

from .conftest import REPO, make_batch, shrink_lazy_model
from .test_sad import _hand_inputs  # two locations of A = 2 anchors, two GTs

LAZY = "configs/COCO-Detection/sad_R_50_FPN_1x.py"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/modeling/conftest.py


def _tiny_sad(**switches):
    cfg = LazyConfig.load(os.path.join(REPO, LAZY))
    for key, value in switches.items():
        node = cfg.model
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    torch.manual_seed(0)
    return instantiate(shrink_lazy_model(cfg.model))


# ---------------------------------------------------------------- Table 2 without AC
def test_noac_seed_depends_on_image_and_draw_only():
    image = torch.zeros(3, 8, 8)
    a = {"image": image, "image_id": 7, "file_name": "a.jpg"}
    assert noac_draw_seed(a, 0) == noac_draw_seed(dict(a), 0)
    assert noac_draw_seed(a, 0) != noac_draw_seed(a, 1)
    assert noac_draw_seed(a, 0) != noac_draw_seed({**a, "image_id": 8}, 0)
    by_file = {"image": image, "file_name": "a.jpg"}
    assert noac_draw_seed(by_file, 0) != noac_draw_seed({**by_file, "file_name": "b.jpg"}, 0)
    by_pixels = {"image": image}  # DefaultPredictor's dicts: neither id nor file name
    assert noac_draw_seed(by_pixels, 0) == noac_draw_seed({"image": image.clone()}, 0)
    assert noac_draw_seed(by_pixels, 0) != noac_draw_seed({"image": image + 1}, 0)


@pytest.fixture(scope="module")
def noac_model():
    model = _tiny_sad(**{"head.anchor_classification": False})
    assert "ac" not in model.head_outputs
    model.test_score_thresh = 0.0  # random weights: let every location through the gate
    model.eval()
    return model


def _boxes(model, items, draw=0):
    model.noac_draw = draw
    with torch.no_grad():
        return [out["instances"].pred_boxes.tensor for out in model(items)]


def _same(a, b):
    """Equal detections up to float noise (a batch of 2 and of 1 run different conv kernels)."""
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-3)


def test_noac_pick_is_drawn_per_image(noac_model):
    """The same pixels under two image ids get different picks; an image gets the same pick
    alone or second in a batch; another draw index is another pick."""
    image = make_batch(1, size=64)[0]["image"]
    first = {"image": image, "image_id": 1, "height": 64, "width": 64}
    second = {"image": image, "image_id": 2, "height": 64, "width": 64}
    together = _boxes(noac_model, [first, second])
    assert len(together[0]) > 0
    assert not _same(together[0], together[1])  # per image, not one pattern for all
    alone = _boxes(noac_model, [second])[0]
    assert _same(alone, together[1])  # independent of the batch and its order
    assert not _same(_boxes(noac_model, [second], draw=1)[0], alone)
    assert torch.equal(_boxes(noac_model, [second], draw=0)[0], alone)


def test_noac_draw_is_a_config_switch():
    cfg = LazyConfig.load(os.path.join(REPO, "projects/SAD/configs/sad_A2_noac_R18_coco_json.py"))
    assert cfg.model.noac_draw == 0 and cfg.model.head.anchor_classification is False


def test_noac_draws_summary_mean_and_best(monkeypatch):
    import importlib.util

    monkeypatch.syspath_prepend(os.path.join(REPO, "benchmarks"))  # its sibling import
    spec = importlib.util.spec_from_file_location(
        "sad_noac_draws", os.path.join(REPO, "benchmarks/sad_noac_draws.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    draws = [{"AP": 10.0, "AP50": 30.0}, {"AP": 14.0, "AP50": 28.0}, {"AP": 12.0, "AP50": 35.0}]
    summary = tool.summarize(draws)
    assert summary["mean"] == {"AP": 12.0, "AP50": 31.0}
    assert summary["best_draw"] == 1 and summary["best"] == draws[1]
    with pytest.raises(ValueError):
        tool.summarize([])


# ---------------------------------------------------------------- IoU after regression logged
@pytest.mark.parametrize("regression", ["anchor", "location"])
def test_iou_after_regression_of_non_positive_anchors_is_logged(regression):
    """Anchor 3's regression moves it onto GT 1 (IoU 1 after regression); anchors 0-2 keep their
    IoU (zero deltas): 100/121, 121/196, 100/110. Logged under R1 and R2 alike."""
    reg = torch.zeros(1, 4, 4)
    reg[0, 3] = torch.tensor([(25.5 - 25) / 18.0, 0.0, math.log(11 / 18), math.log(10 / 18)])
    inputs = _hand_inputs(reg)
    result = SADAssigner(regression=regression)(inputs)
    model = _tiny_sad()
    with EventStorage() as storage:
        model.log_assignment(inputs, result)
        logged = {k: v[0] for k, v in storage.latest().items()}
    assert logged["sad/iou_after_reg_nonpos_anchors"] == pytest.approx(1.0, abs=1e-5)
    pos = (100 / 121 + 121 / 196 + 100 / 110) / 3
    assert logged["sad/iou_after_reg_pos_anchors"] == pytest.approx(pos, rel=1e-4)


# ---------------------------------------------------------------- Table 3 location labelling
def _grid_inputs():
    """Level 0: stride 8, 4 x 4 locations at 4, 12, 20, 28 (8 x 8 anchors); level 1: stride 16,
    2 x 2 locations at 8, 24 (16 x 16 anchors); A = 1, row-major. GT 0 [0, 0, 20, 20] class 1,
    GT 1 [0, 0, 10, 10] class 2. FCOS ranges: level 0 (0, 16], level 1 (16, inf)."""
    boxes = []
    for stride, coords in ((8, (4, 12, 20, 28)), (16, (8, 24))):
        for y in coords:
            for x in coords:
                boxes.append([x - stride / 2, y - stride / 2, x + stride / 2, y + stride / 2])
    anchors = torch.tensor(boxes)
    return AssignInputs(
        anchors=anchors,
        num_anchors_per_level=[16, 4],
        anchor_strides=torch.tensor([8.0] * 16 + [16.0] * 4),
        anchors_per_location=1,
        gt_boxes=torch.tensor([[[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 10.0, 10.0]]]),
        gt_classes=torch.tensor([[1, 2]]),
        gt_counts=torch.tensor([2]),
        num_classes=3,
        pred_scores=torch.full((1, 20, 3), 0.5),
        pred_regression=torch.zeros(1, 20, 4),
        box_coder=DeltaBoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
    )


RANGES = [(0.0, 16.0), (16.0, 1e8)]


def test_fcos_location_labels_on_a_hand_case():
    """Inside GT 0 on level 0: locations (4, 4), (12, 4), (4, 12), (12, 12) (max distance 16,
    16, 16, 12: all in (0, 16]); (4, 4) is inside GT 1 too, the smaller: class 2. Level 1's
    (8, 8) is inside GT 0 but its max distance 12 is not in (16, inf): background."""
    labels, gt = fcos_location_labels(_grid_inputs(), RANGES)
    expected = [3] * 20
    expected[0], expected[1], expected[4], expected[5] = 2, 1, 1, 1
    assert labels[0].tolist() == expected
    assert gt[0, [0, 1, 4, 5]].tolist() == [1, 0, 0, 0] and (gt[0, 6:] == -1).all()
    # FCOS-Shrink, radius 0.5 stride: GT 0's centre region (6, 14), GT 1's (1, 9)
    labels, gt = fcos_location_labels(_grid_inputs(), RANGES, center_radius=0.5)
    expected = [3] * 20
    expected[0], expected[5] = 2, 1
    assert labels[0].tolist() == expected


def test_assigner_location_rule_switches_the_locations_only():
    inputs = _grid_inputs()
    fcos = SADAssigner(location_rule="fcos", fcos_size_ranges=RANGES)(inputs)
    ours = SADAssigner()(inputs)
    assert torch.equal(fcos.extras["anchor_labels"], ours.extras["anchor_labels"])
    assert fcos["locations"].labels[0, [0, 1, 4, 5]].tolist() == [2, 1, 1, 1]
    assert not torch.equal(fcos["locations"].labels, ours["locations"].labels)
    # AC labels only at the positive locations of the rule in use
    ac_valid = fcos["anchor_cls"].labels[0] >= 0
    assert ac_valid.tolist() == (fcos["locations"].labels[0] < 3).tolist()
    with pytest.raises(ValueError, match="location_rule"):
        SADAssigner(location_rule="centre")
    with pytest.raises(ValueError, match="location_gamma"):
        SADAssigner(location_rule="fcos", location_gamma=0.1)
    with pytest.raises(ValueError, match="levels"):
        SADAssigner(location_rule="fcos", fcos_size_ranges=RANGES[:1])(inputs)


@pytest.mark.parametrize("rule", ["fcos", "fcos_shrink"])
def test_table3_configs_change_only_the_location_rule(rule):
    cfg = LazyConfig.load(
        os.path.join(REPO, f"projects/SAD/configs/table3_sad_{rule}_R_50_FPN_1x.py")
    )
    base = LazyConfig.load(os.path.join(REPO, LAZY))
    assert cfg.model.assigner.location_rule == rule
    cfg.model.assigner.location_rule = base.model.assigner.location_rule
    assert LazyConfig.to_py(cfg) == LazyConfig.to_py(base)
    model = _tiny_sad(**{"assigner.location_rule": rule})
    model.train()
    with EventStorage():
        losses = model(make_batch(2, size=64))
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize(
    "name",
    ["sad_fcos_R18_coco_json.py", "sad_fcos_shrink_R18_coco_json.py", "sad_R2_R18_coco_json.py"],
)
def test_bccd_runner_arms_train_a_step(name):
    """The runner's SAD arms (Table 3 labelling, R2) build and train on the quickstart model."""
    cfg = LazyConfig.load(os.path.join(REPO, "projects/SAD/configs", name))
    cfg.model.num_classes = 3
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    with EventStorage() as storage:
        losses = model(make_batch(2, size=64))
        logged = storage.latest()
    assert all(torch.isfinite(v) for v in losses.values())
    assert "sad/iou_after_reg_pos_anchors" in logged
