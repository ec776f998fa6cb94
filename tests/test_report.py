"""The end-of-training report (semianchor/engine/report.py) on a tiny run, and its pieces.

One 12-iteration ATSS run on the 16-image, 128 px shapes split (~10 s on CPU) writes the report;
the tests check the files it writes and what the assignment picture is drawn from.
"""

import glob
import json
import os
import struct
import sys

import numpy as np
import pytest
import torch

from .conftest import REPO, TINY_OVERRIDES

QUICKSTART_ATSS = os.path.join(REPO, "configs", "quickstart", "atss_R18_shapes.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    """(width, height) of a PNG, checking its signature and that it decodes."""
    from PIL import Image

    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    with Image.open(path) as im:
        im.load()  # decodes every pixel: a truncated file fails here
        assert im.size == (width, height)
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 5, f"{path} is (almost) a single colour"
    return width, height


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory, train_net):
    output_dir = str(tmp_path_factory.mktemp("report_run"))
    args = train_net.argument_parser().parse_args(
        [
            "--config-file",
            QUICKSTART_ATSS,
            "--report-images",
            "2",
            *TINY_OVERRIDES,
            f"train.output_dir={output_dir}",
            "train.max_iter=12",
            "train.eval_period=0",
            "model.test_score_thresh=0.001",
        ]
    )
    results = train_net.main(args)
    return output_dir, results


def test_report_files(tiny_report, capsys):
    output_dir, results = tiny_report
    report = os.path.join(output_dir, "report")
    predictions = sorted(f for f in os.listdir(report) if f.startswith("predictions_"))
    assignments = [f for f in os.listdir(report) if f.startswith("assignment_")]
    assert len(predictions) == 2 and len(assignments) == 1, os.listdir(report)
    for name in predictions:
        width, height = _png_size(os.path.join(report, name))
        # two upscaled 128 px panels side by side
        assert width >= 2 * 512 and height >= 512 and width > height, (name, width, height)
    width, height = _png_size(os.path.join(report, assignments[0]))
    assert min(width, height) >= 512, (width, height)  # the 128 px image is upscaled
    width, height = _png_size(os.path.join(report, "loss.png"))
    assert width >= 600 and height >= 300

    with open(os.path.join(report, "summary.txt")) as f:
        summary = f.read()
    ap, ap50 = results["bbox"]["AP"], results["bbox"]["AP50"]
    assert f"AP {ap:.1f}, AP50 {ap50:.1f}" in summary
    assert os.path.join(output_dir, "model_final.pth") in summary
    assert os.path.isfile(os.path.join(output_dir, "model_final.pth"))
    assert f"tensorboard --logdir {output_dir}" in summary
    assert "tools/demo.py --config-file" in summary and "atss_R18_shapes.py" in summary
    assert "lazyconfig_train_net.py --config-file" in summary and "atss_R18_coco_json.py" in summary
    assert "dataloader.train.dataset.json_file=" in summary


def test_summary_demo_command_runs(tiny_report, tmp_path):
    """The printed demo command serves the checkpoint (run in-process, same arguments)."""
    import shlex

    output_dir, _ = tiny_report
    with open(os.path.join(output_dir, "report", "summary.txt")) as f:
        line = next(ln for ln in f if "tools/demo.py" in ln)
    argv = shlex.split(line)
    argv = argv[argv.index(next(a for a in argv if a.endswith("tools/demo.py"))) + 1 :]
    out = str(tmp_path / "demo")
    argv[argv.index("--output") + 1] = out
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import demo

    written = demo.main(["--device", "cpu"] + argv)  # before the trailing key=value overrides
    assert len(written) == 1 and os.path.isfile(written[0])


def test_no_report_flag(tmp_path, train_net):
    args = train_net.argument_parser().parse_args(
        [
            "--config-file",
            QUICKSTART_ATSS,
            "--no-report",
            *TINY_OVERRIDES,
            f"train.output_dir={tmp_path}",
            "train.max_iter=2",
            "train.eval_period=0",
        ]
    )
    train_net.main(args)
    assert os.path.isfile(tmp_path / "model_final.pth")
    assert not os.path.exists(tmp_path / "report")


def test_compute_assignment_matches_atss_rule():
    """Every positive is matched to a real GT, has its centre inside that GT (ATSS's rule) and an
    anchor of its level's size; empty images have none; the model is left as it was."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetMapper

    from semianchor.data import load_shapes
    from semianchor.engine.assignment import compute_assignment

    cfg = LazyConfig.load(QUICKSTART_ATSS)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    records = load_shapes("semianchor_shapes_tiny")
    inputs = [mapper(dict(r)) for r in records[:3]]
    bn_before = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
    assigner = model.assigner
    results = compute_assignment(model, inputs)
    assert model.training and model.assigner is assigner  # mode and assigner restored
    for k, v in model.state_dict().items():  # eval mode: BN statistics untouched
        if k in bn_before:
            torch.testing.assert_close(v, bn_before[k])
    assert len(results) == 3
    assert len(results[1].gt_boxes) == 0 and len(results[1].anchor_boxes) == 0  # image 1 is empty
    for record, a in zip(records, results):
        m = len(record["annotations"])
        assert a.gt_boxes.shape == (m, 4) and a.gt_classes.shape == (m,)
        p = len(a.anchor_boxes)
        assert a.matched_gt.shape == (p,) and a.anchor_levels.shape == (p,)
        if m:
            assert p > 0
            assert a.matched_gt.min() >= 0 and a.matched_gt.max() < m
            centres = (a.anchor_boxes[:, :2] + a.anchor_boxes[:, 2:]) / 2
            gt = a.gt_boxes[a.matched_gt]
            inside = (centres > gt[:, :2] - 1e-3).all(1) & (centres < gt[:, 2:] + 1e-3).all(1)
            assert inside.all()  # ATSS keeps only candidates whose centre is in the GT
        strides = np.array([8, 16, 32, 64, 128])[a.anchor_levels]
        sizes = a.anchor_boxes[:, 2] - a.anchor_boxes[:, 0]
        np.testing.assert_allclose(sizes, 4 * strides, rtol=1e-5)  # quickstart anchors: 4 x stride
        assert a.level_names == ["p3", "p4", "p5", "p6", "p7"]
        assert "ATSS" in a.method


def _assign_two_tiny_images(config):
    """``compute_assignment`` of an untrained ``configs/<config>`` model on two tiny shapes
    images with objects; checks that every image gets positives matched to its real GTs."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetMapper

    from semianchor.data import load_shapes
    from semianchor.engine.assignment import compute_assignment

    cfg = LazyConfig.load(os.path.join(REPO, "configs", config))
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    if hasattr(model, "set_training_schedule"):  # DLA's alpha follows the training progress
        model.set_training_schedule(iters_per_epoch=10, max_iter=100)
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    records = [r for r in load_shapes("semianchor_shapes_tiny") if r["annotations"]][:2]
    results = compute_assignment(model, [mapper(dict(r)) for r in records])
    for record, a in zip(records, results):
        m = len(record["annotations"])
        assert len(a.gt_boxes) == m and len(a.anchor_boxes) > 0
        assert 0 <= a.matched_gt.min() and a.matched_gt.max() < m
    return model, results


@pytest.mark.parametrize(
    "config",
    ["dla_R18_shapes.py", "noisy_anchor_retinanet_R18_shapes.py", "atss_anchor_free_R18_shapes.py"],
)
def test_compute_assignment_other_methods(config):
    """Prediction-aware (DLA, cleanliness) and anchor-free assigners are drawn from the model's
    own training path: every image with objects gets positives matched to real GTs."""
    model, results = _assign_two_tiny_images(os.path.join("quickstart", config))
    for a in results:
        assert type(model).__name__ in a.method


def test_compute_assignment_is_the_training_assignment():
    """The picture is drawn from ``model.assign``, the step ``forward_training`` takes: the same
    positives as the assigner called on the inputs the training step builds."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetMapper

    from semianchor.data import load_shapes
    from semianchor.engine.assignment import compute_assignment

    cfg = LazyConfig.load(QUICKSTART_ATSS)
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    records = [r for r in load_shapes("semianchor_shapes_tiny") if r["annotations"]][:2]
    batch = [mapper(dict(r)) for r in records]
    seen = []
    forward_assign = model.assign
    model.assign = lambda *a: seen.append(forward_assign(*a)) or seen[-1]
    try:
        with torch.no_grad():
            images = model.preprocess_image(batch)
            features = model.backbone(images.tensor)
            features = [features[f] for f in model.head_in_features]
            model.forward_training(
                images, features, model.head(features), [x["instances"] for x in batch]
            )
    finally:
        del model.assign
    ((inputs, result),) = seen
    pictures = compute_assignment(model, batch)
    positive = result.positive_mask(inputs.num_classes)
    for i, a in enumerate(pictures):
        np.testing.assert_array_equal(a.anchor_boxes, inputs.anchors[positive[i]].numpy())
        np.testing.assert_array_equal(a.matched_gt, result.matched_gt[i][positive[i]].numpy())


def test_compute_assignment_noisy_anchor_rpn():
    """A two-stage model's Noisy-Anchor RPN is drawn from its ``assign`` step (objectness, one
    class): its top-N positives, matched to real GTs."""
    from detectron2.config import LazyConfig, instantiate

    from semianchor.engine.assignment import compute_assignment

    from .modeling.conftest import make_batch, shrink_lazy_model
    from .modeling.test_noisy_anchor import LAZY_RCNN

    cfg = LazyConfig.load(os.path.join(REPO, LAZY_RCNN))
    torch.manual_seed(0)
    model = instantiate(shrink_lazy_model(cfg.model))
    batch = make_batch(2, size=64, empty=(1,))
    results = compute_assignment(model, batch)
    topn = model.proposal_generator.assigner.topn
    m = len(batch[0]["instances"])
    assert "NoisyAnchorRPN" in results[0].method
    counts = np.bincount(results[0].matched_gt, minlength=m)
    assert len(counts) == m and (counts > 0).all() and (counts <= topn).all()
    assert len(results[1].anchor_boxes) == 0


def test_compute_assignment_needs_an_assigner():
    from semianchor.engine.assignment import compute_assignment

    class NoAssigner(torch.nn.Module):
        """A model with neither a semianchor assigner nor Detectron2's label_anchors."""

        def backbone(self, x):
            return {}

    with pytest.raises(TypeError, match="no semianchor label assigner"):
        compute_assignment(NoAssigner(), [])


@pytest.mark.parametrize(
    "config", ["quickstart/retinanet_R18_shapes.py", "COCO-Detection/fcos_R_50_FPN_1x.py"]
)
def test_compute_assignment_detectron2_baselines(config):
    """Detectron2's own RetinaNet / FCOS (our baselines) are drawn from their
    label_anchors: RetinaNet's positives have IoU >= 0.5 with their GT or are its best anchor;
    FCOS's positives have their centre inside their GT."""
    from detectron2.structures import Boxes, pairwise_iou

    _, results = _assign_two_tiny_images(config)
    for a in results:
        assert "Detectron2's label_anchors" in a.method
        gt = torch.as_tensor(a.gt_boxes)[torch.as_tensor(a.matched_gt)]
        if "retinanet" in config:
            anchors = Boxes(torch.as_tensor(a.anchor_boxes))
            iou = pairwise_iou(anchors, Boxes(gt)).diagonal()
            # Matcher's low-quality rule: a GT's best anchors are positive too (matched to the GT
            # they overlap most, which need not be that GT)
            gt_by_anchor = pairwise_iou(Boxes(torch.as_tensor(a.gt_boxes)), anchors)  # (M, P)
            best_of_some_gt = (gt_by_anchor >= gt_by_anchor.max(dim=1).values[:, None] - 1e-6).any(
                0
            )
            assert ((iou >= 0.5) | best_of_some_gt).all()
        centres = (a.anchor_boxes[:, :2] + a.anchor_boxes[:, 2:]) / 2
        if "fcos" in config:
            inside = (centres > gt.numpy()[:, :2]).all(1) & (centres < gt.numpy()[:, 2:]).all(1)
            assert inside.all()


def _tiny_overrides(path):
    """Overrides pointing a quickstart config at the 16-image tiny split (shapes or COCO json)."""
    from detectron2.config import LazyConfig

    from semianchor.data.shapes import coco_json_path, load_shapes

    if "names" in LazyConfig.load(path).dataloader.train.dataset:
        return ["dataloader.train.dataset.names=semianchor_shapes_tiny"]
    load_shapes("semianchor_shapes_tiny")  # writes the images and the json on first use
    json_file = coco_json_path("semianchor_shapes_tiny")
    return [
        "dataloader.train.dataset.name=test_visualize_coco_json",
        f"dataloader.train.dataset.json_file={json_file}",
        f"dataloader.train.dataset.image_root={os.path.dirname(json_file)}",
    ]


QUICKSTART_CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(REPO, "configs", "quickstart", "*.py"))
    if "bccd" not in os.path.basename(p)  # the shipped BCCD set: same code path as coco_json
)


def test_the_visualizer_list_holds_every_quickstart_config():
    names = {os.path.basename(p) for p in QUICKSTART_CONFIGS}
    assert {"retinanet_R18_shapes.py", "dla_R18_coco_json.py", "padet_R18_shapes.py"} <= names
    assert len(QUICKSTART_CONFIGS) >= 14


@pytest.mark.parametrize("path", QUICKSTART_CONFIGS, ids=os.path.basename)
def test_visualize_assignment_every_quickstart_config(path, tmp_path, capsys):
    """tools/visualize_assignment.py writes a readable PNG for every shipped
    quickstart config (DLA without a training tool, Detectron2's RetinaNet baseline, COCO-json
    configs with the class count from the json), at the test-time resize training sees."""
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import visualize_assignment
    finally:
        sys.path.pop(0)
    out = tmp_path / "vis"
    visualize_assignment.main(
        ["--config-file", path, "--output", str(out), "--num-images", "1"] + _tiny_overrides(path)
    )
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 1 and _png_size(str(pngs[0]))[0] >= 640
    assert "positives per GT" in capsys.readouterr().out


def test_draw_assignment_rejects_bad_indices(tmp_path):
    from semianchor.engine.assignment import ImageAssignment
    from semianchor.visualization import draw_assignment

    a = ImageAssignment(
        gt_boxes=np.array([[10, 10, 50, 50]], np.float32),
        gt_classes=np.array([0]),
        anchor_boxes=np.array([[20, 20, 40, 40]], np.float32),
        matched_gt=np.array([3]),
        anchor_levels=np.array([0]),
        level_names=["p3"],
        method="test",
    )
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="matched_gt"):
        draw_assignment(image, a, ["a"], str(tmp_path / "x.png"))
    a.matched_gt = np.array([0])
    path = draw_assignment(image, a, ["a"], str(tmp_path / "x.png"), show_anchor_boxes=True)
    assert _png_size(path)[0] >= 512


def test_loss_curve_errors(tmp_path):
    from semianchor.visualization import plot_loss_curve

    with pytest.raises(FileNotFoundError, match="metrics.json"):
        plot_loss_curve(str(tmp_path / "metrics.json"), str(tmp_path / "loss.png"))
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"iteration": 0, "bbox/AP": 1.0}) + "\n")
    with pytest.raises(ValueError, match="no training rows"):
        plot_loss_curve(str(metrics), str(tmp_path / "loss.png"))
    metrics.write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1"):
        plot_loss_curve(str(metrics), str(tmp_path / "loss.png"))


def _assignment_of(config, n_images=2):
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetMapper

    from semianchor.data import load_shapes
    from semianchor.engine.assignment import compute_assignment

    cfg = LazyConfig.load(os.path.join(REPO, "configs", "quickstart", config))
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    records = [r for r in load_shapes("semianchor_shapes_tiny") if r["annotations"]][:n_images]
    return records, compute_assignment(model, [mapper(dict(r)) for r in records]), model


def test_compute_assignment_sad_locations_and_ac_targets(tmp_path):
    """SAD's picture data: positive locations matched to real GTs, each with its A anchors
    (sharing the location's centre); mu_hat in [0, 1], 0 exactly where y_hat = 0, and 1 for the
    best anchor of every location that has a y_hat = 1 anchor (Eq. 2)."""
    from semianchor.visualization import draw_assignment

    records, results, model = _assignment_of("sad_R18_shapes.py")
    A = model.anchor_generator.num_cell_anchors[0]
    assert A > 1
    for record, a in zip(records, results):
        loc = a.locations
        assert loc is not None and a.earlier_stages == []
        q, m = len(loc.centres), len(record["annotations"])
        assert q > 0 and loc.matched_gt.shape == (q,)
        assert 0 <= loc.matched_gt.min() and loc.matched_gt.max() < m
        assert loc.anchor_boxes.shape == (q, A, 4) and loc.soft_targets.shape == (q, A)
        centres = (loc.anchor_boxes[..., :2] + loc.anchor_boxes[..., 2:]) / 2
        np.testing.assert_allclose(
            centres, np.broadcast_to(loc.centres[:, None], centres.shape), atol=1e-3
        )
        mu, yh = loc.soft_targets, loc.ac_positive
        assert (mu >= 0).all() and (mu <= 1 + 1e-6).all()
        assert (mu[~yh] == 0).all() and (mu[yh] > 0).all()
        has = yh.any(1)
        np.testing.assert_allclose(mu[has].max(1), 1.0, rtol=1e-5)
        st = loc.stats
        assert st["positive locations"] == q and st["positive anchors"] >= len(a.anchor_boxes) > 0
        assert st["negative locations"] < st["negative anchors"]  # the 1:1400 -> 1:200 effect
    image = np.zeros((128, 128, 3), np.uint8)
    one = draw_assignment(image, results[0], [], str(tmp_path / "sad.png"), title="SAD")
    results[0].locations = None
    plain = draw_assignment(image, results[0], [], str(tmp_path / "plain.png"), title="SAD")
    assert _png_size(one)[0] > 1.8 * _png_size(plain)[0]  # a second panel (and its colour bar)


def test_compute_assignment_padet_initial_vs_promoted(tmp_path):
    """PADet's two stages: the initial matching on the SSD anchors and the final one on the
    promoted anchors (the initial anchors moved by the APM's deltas), each with its positives."""
    from semianchor.visualization import draw_assignment

    records, results, model = _assignment_of("padet_R18_shapes.py")
    for record, a in zip(records, results):
        assert a.locations is None and a.stage == "promoted"
        (initial,) = a.earlier_stages
        assert initial.stage == "initial"
        m = len(record["annotations"])
        for view in (initial, a):
            assert len(view.gt_boxes) == m
            if len(view.anchor_boxes):
                assert 0 <= view.matched_gt.min() and view.matched_gt.max() < m
        assert len(initial.anchor_boxes) > 0
    image = np.zeros((128, 128, 3), np.uint8)
    two = draw_assignment(image, results[0], [], str(tmp_path / "padet.png"), title="PADet")
    results[0].earlier_stages = []
    one = draw_assignment(image, results[0], [], str(tmp_path / "one.png"), title="PADet")
    assert _png_size(two)[0] > 1.8 * _png_size(one)[0]


def _import_tool(name):
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_report_and_tools_draw_one_assignment_picture(tmp_path, monkeypatch):
    """The training report, tools/visualize_assignment.py and the example images of
    tools/analyze_assignment.py are all drawn by ``semianchor.visualization.draw_assignment``: a
    spy on the figures it saves sees each of their assignment pictures and none of the others."""
    from detectron2.config import LazyConfig, instantiate

    import semianchor.visualization.assignment as picture
    from semianchor.engine.report import write_report

    saved, save = [], picture.save_figure
    monkeypatch.setattr(
        picture, "save_figure", lambda fig, path: saved.append(path) or save(fig, path)
    )

    tiny = ["dataloader.train.dataset.names=semianchor_shapes_tiny"]
    drawn = _import_tool("visualize_assignment").main(
        ["--config-file", QUICKSTART_ATSS, "--output", str(tmp_path / "vis"), "--num-images", "1"]
        + tiny
    )
    assert len(drawn) == 1 and drawn[0] in saved

    _import_tool("analyze_assignment").main(
        ["--config-file", QUICKSTART_ATSS, "--assigners", "maxiou_strict"]
        + ["--dataset", "semianchor_shapes_tiny", "--max-images", "3", "--no-progress"]
        + ["--output", str(tmp_path / "analysis")]
    )
    examples = sorted(glob.glob(str(tmp_path / "analysis" / "examples" / "*.jpg")))
    assert examples and all(os.path.abspath(p) in map(os.path.abspath, saved) for p in examples)
    assert not any(p.endswith("positives_vs_size.png") for p in saved)  # the spy is specific

    cfg = LazyConfig.apply_overrides(
        LazyConfig.load(QUICKSTART_ATSS),
        TINY_OVERRIDES + [f"train.output_dir={tmp_path / 'run'}"],
    )
    os.makedirs(cfg.train.output_dir)
    with open(os.path.join(cfg.train.output_dir, "metrics.json"), "w") as f:
        for it in range(2):
            f.write(json.dumps({"iteration": it, "total_loss": 1.0, "loss_cls": 0.5}) + "\n")
    torch.manual_seed(0)
    written = write_report(cfg, instantiate(cfg.model), num_images=1, print_summary=False)
    assert written["assignment"] in saved
    assert written["loss"] not in saved and written["predictions"][0] not in saved
