"""End-to-end runs of tools/lazyconfig_train_net.py on the tiny embedded split (CPU, seconds).

Every run uses the quickstart RetinaNet config with the overrides of ``conftest.TINY_OVERRIDES``.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog

from semianchor.data import SHAPES_CLASS_NAMES, load_shapes

from .conftest import QUICKSTART_RETINANET, REPO, TINY_OVERRIDES, TRAIN_NET


def _metrics(output_dir):
    """The training records of metrics.json (one dict per logged iteration)."""
    with open(os.path.join(output_dir, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if "total_loss" in r]


def _train(train_net, tool_args, output_dir, *overrides, flags=()):
    args = tool_args(
        "--config-file",
        QUICKSTART_RETINANET,
        *flags,
        *TINY_OVERRIDES,
        f"train.output_dir={output_dir}",
        *overrides,
    )
    return train_net.main(args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_net):
    """A 50-iteration run whose checkpoint and results several tests read."""
    from detectron2.engine import default_argument_parser

    output_dir = str(tmp_path_factory.mktemp("trained"))
    args = default_argument_parser().parse_args(
        [
            "--config-file",
            QUICKSTART_RETINANET,
            *TINY_OVERRIDES,
            f"train.output_dir={output_dir}",
            "train.max_iter=50",
            "train.eval_period=0",
            "optimizer.lr=0.02",
            "model.test_score_thresh=0.001",  # enough detections for a non-trivial AP early on
        ]
    )
    results = train_net.main(args)
    return output_dir, results


def test_loss_falls_and_evaluates(trained):
    output_dir, results = trained
    # metrics.json holds the median of the last <= 20 iterations (Detectron2's smoothing)
    losses = [r["total_loss"] for r in _metrics(output_dir)]
    assert len(losses) == 50
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.9 * first, (first, last)
    assert set(results["bbox"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    # AP > 0, not merely finite: an evaluation that never matches a box (wrong class ids, boxes
    # in the wrong frame, scores thresholded away) gives AP 0, which is finite
    assert results["bbox"]["AP"] > 0, results["bbox"]
    for name in ("model_final.pth", "last_checkpoint", "config.yaml"):
        assert os.path.exists(os.path.join(output_dir, name)), name


def test_eval_only_reproduces_ap(trained, train_net, tool_args):
    output_dir, results = trained
    args = tool_args(
        "--config-file",
        QUICKSTART_RETINANET,
        "--eval-only",
        *TINY_OVERRIDES,
        f"train.output_dir={output_dir}/eval",
        f"train.init_checkpoint={output_dir}/model_final.pth",
        "model.test_score_thresh=0.001",
    )
    again = train_net.main(args)
    for key, value in results["bbox"].items():
        assert again["bbox"][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_resume_continues_at_next_iteration(tmp_path, train_net, tool_args):
    out = str(tmp_path)
    common = ["train.eval_period=0", "train.checkpointer.period=2"]
    _train(train_net, tool_args, out, *common, "train.max_iter=4")
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_final.pth"
    _train(train_net, tool_args, out, *common, "train.max_iter=7", flags=("--resume",))
    iterations = [r["iteration"] for r in _metrics(out)]
    assert iterations == list(range(7))  # 0-3 in the first run, 4-6 after resuming


@pytest.fixture
def empty_only_dataset():
    """A dataset whose only image has no object, so every batch has zero ground truth."""
    name = "semianchor_test_empty_only"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(
            name,
            lambda: [r for r in load_shapes("semianchor_shapes_tiny") if not r["annotations"]],
        )
        MetadataCatalog.get(name).set(thing_classes=list(SHAPES_CLASS_NAMES))
    return name


def test_images_without_objects_train(tmp_path, train_net, tool_args, empty_only_dataset):
    _train(
        train_net,
        tool_args,
        str(tmp_path),
        f"dataloader.train.dataset.names={empty_only_dataset}",
        "dataloader.train.dataset.filter_empty=False",
        "dataloader.train.total_batch_size=2",
        "train.max_iter=3",
        "train.eval_period=0",
    )
    rows = _metrics(str(tmp_path))
    assert len(rows) == 3
    assert all(np.isfinite(r["total_loss"]) and r["loss_box_reg"] == 0 for r in rows)


def test_non_finite_loss_stops_training(tmp_path, train_net, tool_args):
    # std 0 -> inf/nan pixels -> nan loss at the first iteration
    with pytest.raises(FloatingPointError) as excinfo:
        _train(
            train_net, tool_args, str(tmp_path), "model.pixel_std=[0.0,0.0,0.0]", "train.max_iter=5"
        )
    message = str(excinfo.value)
    assert "non-finite loss" in message and "iteration=0" in message
    assert "loss_cls" in message and "loss_box_reg" in message


def test_missing_coco_json_names_the_file(tmp_path, train_net, tool_args):
    missing = str(tmp_path / "nowhere" / "train.json")
    args = tool_args(
        "--config-file",
        os.path.join(REPO, "configs", "quickstart", "retinanet_R18_coco_json.py"),
        f"train.output_dir={tmp_path}",
        "train.device=cpu",
        f"dataloader.train.dataset.json_file={missing}",
        f"dataloader.train.dataset.image_root={tmp_path}",
    )
    with pytest.raises(FileNotFoundError, match=missing):
        train_net.main(args)


def test_auto_device_is_cpu_without_cuda(train_net):
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert train_net.resolve_device("auto") == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            train_net.resolve_device("cuda")


def test_two_process_cpu_launch(tmp_path):
    """``--num-gpus 2`` without CUDA: two gloo processes train, checkpoint and evaluate."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    command = [
        sys.executable,
        TRAIN_NET,
        "--config-file",
        QUICKSTART_RETINANET,
        "--num-gpus",
        "2",
        *TINY_OVERRIDES,
        f"train.output_dir={tmp_path}",
        "train.max_iter=3",
        "train.eval_period=0",
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.path.exists(os.path.join(tmp_path, "model_final.pth"))
    assert "copypaste: AP,AP50" in proc.stdout + proc.stderr
    assert "on 2 devices" in proc.stdout + proc.stderr  # inference was split over both ranks


def test_too_few_model_classes_is_an_error(train_net):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "model": {"num_classes": 2},
            "dataloader": {"train": {"dataset": {"names": "semianchor_shapes_tiny"}}},
        }
    )
    with pytest.raises(ValueError, match="model.num_classes=4"):
        train_net.check_num_classes(cfg)
    cfg.model.num_classes = 4
    train_net.check_num_classes(cfg)
