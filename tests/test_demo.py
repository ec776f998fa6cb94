"""tools/demo.py: a checkpoint of the quickstart LazyConfig model is served by DefaultPredictor
through the yacs twin config, and the drawn detections are written as PNGs."""

import os
import sys

import cv2
import numpy as np
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate

from semianchor import model_zoo
from semianchor.data.shapes import load_shapes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import demo  # noqa: E402


def test_demo_writes_pngs_with_boxes(tmp_path):
    cfg = model_zoo.get_config("quickstart/atss_R18_shapes.py")
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model_quickstart")
    weights = str(tmp_path / "model_quickstart.pth")

    images = tmp_path / "images"
    images.mkdir()
    for rec in load_shapes("semianchor_shapes_tiny")[:2]:
        os.symlink(rec["file_name"], images / os.path.basename(rec["file_name"]))

    out_dir = tmp_path / "out"
    for config in ("configs/yacs/ATSS_R18_shapes.yaml", "configs/quickstart/atss_R18_shapes.py"):
        written = demo.main(
            [
                "--config-file",
                os.path.join(REPO, config),
                "--input",
                str(images),
                "--output",
                str(out_dir),
                "--weights",
                weights,
                "--confidence-threshold",
                "0.0",
                "--device",
                "cpu",
            ]
        )
        assert len(written) == 2
        originals = {os.path.splitext(f)[0]: str(images / f) for f in os.listdir(images)}
        for path in written:
            drawn = cv2.imread(path)
            original = cv2.imread(originals[os.path.splitext(os.path.basename(path))[0]])
            assert drawn is not None and drawn.shape == original.shape
            assert np.abs(drawn.astype(int) - original.astype(int)).sum() > 0  # boxes drawn


def test_demo_missing_input_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="input not found"):
        demo.main(
            [
                "--config-file",
                os.path.join(REPO, "configs/yacs/ATSS_R18_shapes.yaml"),
                "--input",
                str(tmp_path / "nope.png"),
                "--output",
                str(tmp_path),
                "--device",
                "cpu",
                "MODEL.WEIGHTS",
                "",
            ]
        )


def _demo_subprocess(tmp_path, *extra):
    import subprocess

    rec = load_shapes("semianchor_shapes_tiny")[0]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "demo.py"),
            "--config-file",
            os.path.join(REPO, "configs/quickstart/atss_R18_shapes.py"),
            "--input",
            rec["file_name"],
            "--output",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_demo_without_weights_fails_instead_of_drawing_random_boxes(tmp_path):
    proc = _demo_subprocess(tmp_path)
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "No weights to serve" in proc.stderr
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_demo_rejects_a_checkpoint_without_the_head(tmp_path):
    cfg = model_zoo.get_config("quickstart/atss_R18_shapes.py")
    model = instantiate(cfg.model)
    backbone_only = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    torch.save({"model": backbone_only}, tmp_path / "backbone_only.pth")
    proc = _demo_subprocess(tmp_path, "--weights", str(tmp_path / "backbone_only.pth"))
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "is not a trained" in proc.stderr and "head." in proc.stderr, proc.stderr[-2000:]
