"""The assignment analysis (semianchor/analysis, tools/analyze_assignment.py): its counts against
what the assigners return on a hand case, the static / dynamic paths, every shipped detector, and
COCO jsons with awkward content. Tiny: 64-128 px images, 1-2 images per run."""

import json
import os
import sys

import numpy as np
import pytest
import torch

from .conftest import REPO

QUICKSTART = os.path.join(REPO, "configs", "quickstart")


def _tool():
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import analyze_assignment
    finally:
        sys.path.pop(0)
    return analyze_assignment


# ----------------------------------------------------------------------------- a hand case
def _hand_assignment(allow_low_quality):
    """Level 0: four 16 px anchors tiling (0, 0)-(32, 32); level 1: one 32 px anchor. GT 0 is
    anchor 0 exactly (IoU 1); GT 1 is a 6 px box inside anchor 3 (IoU 36 / 256 = 0.140625 with
    it, 36 / 1024 with the 32 px anchor, 0 with the others)."""
    from semianchor.engine.assignment import Assignment
    from semianchor.modeling.assigners import AssignInputs, MaxIoUAssigner

    anchors = torch.tensor(
        [[0, 0, 16, 16], [16, 0, 32, 16], [0, 16, 16, 32], [16, 16, 32, 32], [0, 0, 32, 32]],
        dtype=torch.float32,
    )
    inputs = AssignInputs(
        anchors=anchors,
        num_anchors_per_level=[4, 1],
        anchor_strides=torch.tensor([16.0] * 4 + [32.0]),
        anchors_per_location=1,
        gt_boxes=torch.tensor([[[0, 0, 16, 16], [20, 20, 26, 26]]], dtype=torch.float32),
        gt_classes=torch.tensor([[1, 0]]),
        gt_counts=torch.tensor([2]),
        num_classes=2,
    )
    assigner = MaxIoUAssigner(allow_low_quality_matches=allow_low_quality)
    result = assigner(inputs)
    return Assignment(inputs, result, ["p3", "p4"], repr(assigner)), result


@pytest.mark.parametrize("low_quality", [False, True])
def test_hand_case_counts_equal_the_assigner(low_quality):
    from semianchor.analysis import AssignmentStats

    assignment, result = _hand_assignment(low_quality)
    stats = AssignmentStats("maxiou", num_classes=2)
    stats.update(assignment, [0], ["hand.jpg"])
    gt = stats.gt_table()
    # what the assigner returned, counted here independently
    pos = (result.labels >= 0) & (result.labels < 2)
    per_gt = torch.bincount(result.matched_gt[pos], minlength=2).numpy()
    np.testing.assert_array_equal(gt["num_pos"], per_gt)
    # ... and by hand: GT 0 takes anchor 0; GT 1 only its best anchor 3, by the low-quality rule
    np.testing.assert_array_equal(per_gt, [1, 1] if low_quality else [1, 0])
    np.testing.assert_allclose(gt["size"], [16.0, 6.0])
    np.testing.assert_allclose(gt["best_iou"], [1.0, 36 / 256], rtol=1e-6)
    np.testing.assert_array_equal(gt["cls"], [1, 0])

    tables = stats.tables(["a", "b"])
    overall = tables["overall"][0]
    assert overall["GTs"] == 2 and overall["images"] == 1
    assert overall["GTs without positive"] == (0 if low_quality else 1)
    # 5 anchors: 1 or 2 positives, the rest background (all IoUs < 0.4: no ignored anchor)
    assert overall["pos:neg:ign anchors"] == ("1 : 1.5 : 0.0" if low_quality else "1 : 4.0 : 0.0")
    bins = {r["size (sqrt area, px)"]: r for r in tables["size"]}
    assert bins["0-8"]["GTs"] == 1 and bins["0-8"]["pos / GT mean"] == float(low_quality)
    assert bins["0-8"]["share without positive"] == float(not low_quality)
    assert bins["16-24"]["GTs"] == 1 and bins["16-24"]["pos / GT mean"] == 1.0
    assert bins["COCO small"]["GTs"] == 2 and bins["COCO medium"]["GTs"] == 0
    levels = {r["level"]: r for r in tables["levels"]}
    assert (levels["p3"]["pos anchors"], levels["p3"]["neg anchors"]) == (
        1 + low_quality,
        3 - low_quality,
    )
    assert (levels["p4"]["pos anchors"], levels["p4"]["neg anchors"]) == (0, 1)
    classes = {r["class"]: r for r in tables["classes"]}
    assert classes["b"]["pos / GT mean"] == 1.0
    assert classes["a"]["GTs without positive"] == (0 if low_quality else 1)
    # positives' IoU: anchor 0 with GT 0 (1.0), anchor 3 with GT 1 (0.14)
    expected = np.mean([1.0, 36 / 256] if low_quality else [1.0])
    assert abs(overall["mean IoU of positives"] - expected) < 1e-6
    worst = stats.worst(class_names=["a", "b"])
    assert [(w["image"], w["class"], w["w"]) for w in worst] == (
        [] if low_quality else [("hand.jpg", "a", 6.0)]
    )
    assert len(stats.examples) == (0 if low_quality else 1)


def test_examples_are_drawn_from_the_assignment_counted(tmp_path):
    """write_examples draws each kept image from its model's assignment step again (the
    assignment picture) and refuses a picture that differs from what was counted."""
    from semianchor.analysis import AssignmentStats, write_examples

    counted, _ = _hand_assignment(False)  # GT 1 gets no positive
    stats = AssignmentStats("maxiou", num_classes=2)
    stats.update(counted, [0], ["hand.jpg"])

    class Replay:  # an AnalysisModel whose assignment step returns a fixed assignment
        def __init__(self, assignment):
            self.assignment, self.calls = assignment, 0

        def assign(self, batched_inputs, iteration=0):
            self.calls += 1
            return self.assignment

    class Mapper:
        image_format = "RGB"

        def __call__(self, record):
            return {"image": torch.full((3, 32, 32), 128, dtype=torch.uint8)}

    model = Replay(counted)
    written = write_examples([model], [stats], [{}], Mapper(), str(tmp_path), ["a", "b"])
    assert model.calls == 1 and written == {"maxiou": ["examples/maxiou_hand.jpg"]}
    assert (tmp_path / "examples" / "maxiou_hand.jpg").stat().st_size > 0
    other, _ = _hand_assignment(True)  # the low-quality rule gives GT 1 a positive
    with pytest.raises(RuntimeError, match="hand.jpg .* differs from the one counted"):
        write_examples([Replay(other)], [stats], [{}], Mapper(), str(tmp_path))


def test_rows_folded_over_many_images_keep_every_gt(monkeypatch):
    """Over more images than the folding period, the per-GT table is every image's rows in
    order (the folding into single arrays keeps memory flat, and loses nothing)."""
    from semianchor.analysis import AssignmentStats, assignment

    monkeypatch.setattr(assignment, "_COMPACT_EVERY", 8)  # a short period: a fast test
    pair, _ = _hand_assignment(False)
    stats = AssignmentStats("maxiou", num_classes=2)
    n = 2 * 8 + 3
    for i in range(n):
        stats.update(pair, [i], [f"{i}.jpg"])
    assert len(stats.rows["image"]) < 8  # folded
    gt = stats.gt_table()
    np.testing.assert_array_equal(gt["image"], np.repeat(np.arange(n), 2))
    np.testing.assert_array_equal(gt["num_pos"], np.tile([1, 0], n))
    assert stats.tables()["overall"][0]["GTs without positive"] == n


def _run_tool(config, *args):
    """``tools/analyze_assignment.py --config-file configs/quickstart/<config> <args>``."""
    return _tool().main(["--config-file", os.path.join(QUICKSTART, config), *args])


def _json_args(json_path, image_root):
    return ["--json", str(json_path), "--image-root", str(image_root)]


# ----------------------------------------------------------------------------- static / dynamic
def test_static_path_needs_no_weights(tmp_path, capsys):
    out = tmp_path / "report"
    ret = _run_tool(
        "atss_R18_shapes.py",
        "--assigners",
        "config,maxiou_strict",
        "--dataset",
        "semianchor_shapes_tiny",
        "--max-images",
        "2",
        "--output",
        str(out),
        "--no-progress",
    )
    for name in ("README.md", "overall.csv", "size_bins.csv", "levels.csv", "classes.csv"):
        assert (out / name).is_file(), name
    for name in ("per_gt.csv", "positives_vs_size.png", "level_shares.png"):
        assert (out / name).stat().st_size > 0, name
    text = (out / "README.md").read_text()
    assert "static, no weights needed" in text and "RandomFlip dropped" in text
    printed = capsys.readouterr().out
    assert "atss_R18_shapes:" in printed and "maxiou_strict:" in printed
    # 2 images: image 0 (crowded) and image 1 (empty); GT rows are image 0's annotations
    from semianchor.data import load_shapes

    m = len(load_shapes("semianchor_shapes_tiny")[0]["annotations"])
    atss, strict = ret["stats"]
    assert len(atss.gt_table()["size"]) == m and atss.num_images == 2
    with open(out / "per_gt.csv") as f:
        assert len(f.readlines()) == 1 + 2 * m


def test_dynamic_rule_refuses_without_weights():
    with pytest.raises(ValueError, match="need --weights") as e:
        _run_tool("sad_R18_shapes.py", "--dataset", "semianchor_shapes_tiny", "--output", "unused")
    assert "SADAssigner" in str(e.value) and "reads the model's predictions" in str(e.value)
    with pytest.raises(ValueError, match="cleanliness: .*predictions.*\n.*static rules run on"):
        _run_tool(
            "atss_R18_shapes.py",
            "--assigners",
            "atss,cleanliness",
            "--dataset",
            "semianchor_shapes_tiny",
            "--output",
            "unused",
        )


# ----------------------------------------------------------------------------- every detector
METHODS = [
    ("quickstart/atss_R18_shapes.py", True),
    ("quickstart/atss_anchor_free_R18_shapes.py", True),
    ("quickstart/retinanet_R18_shapes.py", True),  # Detectron2's label_anchors
    ("COCO-Detection/fcos_R_50_FPN_1x.py", True),  # Detectron2's label_anchors
    ("quickstart/dla_R18_shapes.py", False),
    ("quickstart/noisy_anchor_retinanet_R18_shapes.py", False),
    ("quickstart/sad_R18_shapes.py", False),
    ("quickstart/padet_R18_shapes.py", False),
    ("COCO-Detection/noisy_anchor_faster_rcnn_R_50_FPN_1x.py", False),  # the RPN
]


@pytest.mark.parametrize("config,static", METHODS, ids=[os.path.basename(c) for c, _ in METHODS])
def test_every_shipped_detector(config, static, tmp_path):
    """Every shipped method and baseline on two tiny images with objects: the GT rows are the
    images' GTs and every positive counted belongs to one; dynamic rules run from a checkpoint."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetMapper

    from semianchor.analysis import analyze, build_models
    from semianchor.data import load_shapes

    cfg = LazyConfig.load(os.path.join(REPO, "configs", config))
    if "roi_heads" in cfg.model:
        from .modeling.conftest import shrink_lazy_model

        shrink_lazy_model(cfg.model)
    weights = None
    if not static:
        weights = str(tmp_path / "model.pth")
        torch.manual_seed(0)
        model_cfg = cfg.model
        if "num_classes" in model_cfg:
            model_cfg.num_classes = 4
        torch.save({"model": instantiate(model_cfg).state_dict()}, weights)
    models = build_models([("m", cfg, weights)], num_classes=4)
    assert models[0].static == static, models[0].why
    records = [r for r in load_shapes("semianchor_shapes_tiny") if r["annotations"]][:2]
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    (stats,), counters = analyze(models, records, mapper, 4, progress=False)
    gt = stats.gt_table()
    assert len(gt["size"]) == counters["gts_mapped"] == sum(len(r["annotations"]) for r in records)
    final = stats.stage_names[-1]
    assert gt["num_pos"].sum() == stats.anchor_counts[final][:, 0].sum() > 0
    overall = stats.tables()["overall"][0]
    if "sad" in config:
        assert "pos:neg:ign locations" in overall and "mean SAD mu_hat" in overall
    if "padet" in config:
        assert stats.stage_names == ["initial", "promoted"] and "pos:neg:ign initial" in overall
    if "noisy_anchor_retinanet" in config:
        assert 0 < overall["mean cleanliness c"] < 1
    if "dla" in config:
        assert 0 < overall["mean DLA metric m"] <= 1
    if not static and "rcnn" not in config:
        assert stats.reg_iou_hist.sum() > 0  # the head ran: IoU after regression


# ----------------------------------------------------------------------------- awkward jsons
def _write_json(tmp_path, annotations, name="data.json"):
    import cv2

    rng = np.random.default_rng(0)
    images = []
    for i in range(2):
        file_name = f"im{i}.jpg"
        cv2.imwrite(str(tmp_path / file_name), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
        images.append({"id": i + 1, "file_name": file_name, "height": 64, "width": 96})
    path = tmp_path / name
    path.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": 1, "name": "thing"}, {"id": 2, "name": "other"}],
            }
        )
    )
    return str(path)


def test_coco_json_empty_image_and_gt_larger_than_the_image(tmp_path):
    """Image 2 has no annotation (all its anchors negatives); image 1 has a GT larger than the
    image (clipped by the mapper to the image's right and bottom edges) and a small one."""
    path = _write_json(
        tmp_path,
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [-20, -10, 150, 100], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [10, 10, 12, 8], "iscrowd": 0},
        ],
    )
    out = tmp_path / "report"
    ret = _run_tool(
        "atss_R18_coco_json.py",
        *_json_args(path, tmp_path),
        "--output",
        str(out),
        "--no-progress",
    )
    (stats,) = ret["stats"]
    assert ret["counters"]["images"] == 2 and ret["counters"]["gts_mapped"] == 2
    gt = stats.gt_table()
    assert stats.num_images == 2 and len(gt["size"]) == 2
    assert gt["num_pos"][0] > 0  # the large GT gets positives
    # the test resize maps the 64 px side to 256: the large GT spans the whole input width
    assert gt["w"][0] > gt["w"][1] * 5
    counts = stats.anchor_counts["final"]
    assert counts[:, 1].sum() > 0 and counts[:, 2].sum() == 0  # ATSS ignores nothing
    assert "2 images, 2 GT boxes" in (out / "README.md").read_text()


def test_coco_json_degenerate_box_is_rejected_at_load(tmp_path):
    path = _write_json(
        tmp_path,
        [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [10, 10, -5, 8], "iscrowd": 0}],
    )
    with pytest.raises(ValueError, match="annotation id 7"):
        _run_tool(
            "atss_R18_coco_json.py",
            *_json_args(path, tmp_path),
            "--output",
            str(tmp_path / "report"),
        )
