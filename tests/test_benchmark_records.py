"""Benchmark records: portable (no machine's absolute path in the tracked commands), and one
reading of a run's final metrics for every benchmark."""

import glob
import importlib.util
import json
import math
import os
import re

import pytest

from .conftest import REPO

ABSOLUTE = re.compile(r"(?<![\w$.])/(?:work|home|root|tmp|data|mnt|Users)/")


def _benchmark(name: str):
    """benchmarks/<name>.py as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(REPO, "benchmarks", f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_assigners():
    return _benchmark("train_assigners")


def test_portable_command_uses_a_placeholder_and_relative_paths():
    ta = _train_assigners()
    command = (
        "tools/lazyconfig_train_net.py "
        f"--config-file {REPO}/configs/quickstart/atss_R18_coco_json.py "
        "dataloader.train.dataset.json_file=/srv/x/bccd/annotations/train.json "
        "dataloader.train.dataset.image_root=/srv/x/bccd/images "
        "dataloader.test.dataset.json_file=/srv/x/bccd/annotations/val.json "
        "dataloader.test.dataset.image_root=/srv/x/bccd/images"
    )
    out = ta.portable_command(command, "bccd_seed1")
    assert "/srv/" not in out and REPO not in out, out
    assert "dataloader.train.dataset.json_file=$BCCD/annotations/train.json" in out
    assert "dataloader.test.dataset.image_root=$BCCD/images" in out
    assert "--config-file configs/quickstart/atss_R18_coco_json.py" in out


def test_tracked_records_hold_no_absolute_path():
    files = glob.glob(os.path.join(REPO, "benchmarks", "results", "**", "*.json"), recursive=True)
    files += glob.glob(os.path.join(REPO, "benchmarks", "*.md"))
    assert files
    for path in files:
        with open(path) as f:
            text = f.read()
        if path.endswith(".json"):
            text = json.dumps(json.loads(text).get("command", ""))
        assert not ABSOLUTE.search(text), (path, ABSOLUTE.search(text).group(0))


def test_write_table_goes_where_it_is_told(tmp_path):
    ta = _train_assigners()
    results = tmp_path / "results" / "mini"
    results.mkdir(parents=True)
    record = {
        "method": "atss",
        "dataset": "mini",
        "config": "configs/quickstart/atss_R18_coco_json.py",
        "command": "python x dataloader.train.dataset.json_file=/srv/d/mini/a.json "
        "dataloader.train.dataset.image_root=/srv/d/mini/img",
        "iterations": 3,
        "wall_seconds": 1.0,
        "metrics": {"AP": 1.0},
    }
    (results / "atss.json").write_text(json.dumps(record))
    tracked = os.path.join(REPO, "benchmarks", "ASSIGNERS.md")
    before = open(tracked).read()
    table = tmp_path / "table.md"
    ta.write_table(str(tmp_path / "results"), str(tmp_path / "runs"), str(table))
    assert open(tracked).read() == before  # the tracked table is only written when asked
    text = table.read_text()
    assert "| mini | atss | 3 |" in text and "$MINI/a.json" in text and "/srv/" not in text
    assert "/srv/" not in (results / "atss.json").read_text()


def test_record_command_hides_an_absolute_output_dir():
    ta = _train_assigners()
    command = (
        "tools/lazyconfig_train_net.py --config-file configs/quickstart/dla_R18_coco_json.py "
        "train.output_dir=/srv/runs/bccd/dla train.seed=1"
    )
    out = ta.record_command(command, "bccd", "/srv/runs/")
    assert "/srv/" not in out and "train.output_dir=$OUTPUT_DIR/bccd/dla" in out
    assert ta.record_command(command, "bccd", "output/bench") == ta.portable_command(
        command, "bccd"
    )


def test_recorded_iterations_are_the_runs_train_max_iter(tmp_path):
    """A DLA run's config.yaml lists the model's own max_iter (alpha's schedule, the config's
    300) before train.max_iter (the 150 really run): the record takes the latter."""
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(os.path.join(REPO, "configs/quickstart/dla_R18_coco_json.py"))
    cfg.train.max_iter = 150
    path = str(tmp_path / "config.yaml")
    LazyConfig.save(cfg, path)
    text = open(path).read()
    assert text.index("max_iter: 300") < text.index("max_iter: 150")
    assert _train_assigners().run_max_iter(path) == 150


def test_train_step_benchmark_times_every_phase_of_each_kind_of_model():
    """The step benchmark's timers see the backbone, the head and the assignment of an
    AssignmentDetector (ATSS), a Detectron2 dense detector (RetinaNet's label_anchors) and the
    two-stage Noisy-Anchor Faster R-CNN, and the phases add up to the step."""
    bench = _benchmark("bench_train_step")
    batch = bench.fixed_batch(2, image_size=(128, 128))
    trainees = [bench.Trainee(name) for name in ("atss", "retinanet", "noisy_anchor_faster_rcnn")]
    for t in trainees:
        t.step(batch, 0, record=True)
        (r,) = t.records
        assert r["forward"] > 0 and r["assign"] > 0 and r["backward"] > 0, (t.name, r)
        parts = r["forward"] + r["assign"] + r["loss"] + r["backward"] + r["optimizer"]
        assert abs(parts - r["step"]) < 1e-6, (t.name, r)
        assert r["loss"] > 0, (t.name, r)


def _run_folder(path, bbox, log=None):
    path.mkdir()
    rows = [{"iteration": 9, "loss": 1.0}, {"iteration": 10, **{f"bbox/{k}": v for k, v in bbox}}]
    (path / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if log is not None:
        (path / "log.txt").write_text(log)
    return str(path)


def test_one_final_metrics_with_one_nan_rule(tmp_path):
    """Every benchmark reads a run's metrics with benchmark_records.final_metrics: all NaN is 0
    only when the log shows COCOEvaluator's no-detection case; any other NaN stays NaN."""
    records = _benchmark("benchmark_records")
    ta, dc = _train_assigners(), _benchmark("dla_collapse")
    assert ta.final_metrics.__module__ == dc.final_metrics.__module__ == "benchmark_records"
    nan = float("nan")
    empty = _run_folder(
        tmp_path / "empty", [("AP", nan), ("AP50", nan)], "x\nNo predictions from the model!\n"
    )
    assert records.final_metrics(empty) == ({"AP": 0.0, "AP50": 0.0}, 10)
    silent = _run_folder(tmp_path / "silent", [("AP", nan), ("AP50", nan)], "no such line\n")
    metrics, _ = records.final_metrics(silent)
    assert all(math.isnan(v) for v in metrics.values()) and set(metrics) == {"AP", "AP50"}
    no_log = _run_folder(tmp_path / "no_log", [("AP", nan)])
    assert math.isnan(records.final_metrics(no_log)[0]["AP"])
    partial = _run_folder(
        tmp_path / "partial", [("AP", 12.5), ("APs", nan)], "No predictions from the model!"
    )
    metrics, _ = records.final_metrics(partial, ("AP", "APs", "APl"))
    assert metrics["AP"] == 12.5 and math.isnan(metrics["APs"]) and "APl" not in metrics
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "metrics.json").write_text(json.dumps({"iteration": 1}) + "\n")
    with pytest.raises(RuntimeError, match="no bbox/AP"):
        records.final_metrics(str(tmp_path / "none"))
