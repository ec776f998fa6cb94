"""A CPU training run prints none of the dependencies' start-up noise (semianchor/_noise.py)."""

import os
import subprocess
import sys

from .conftest import QUICKSTART_RETINANET, REPO, TINY_OVERRIDES, TRAIN_NET

NOISE = (
    "No CUDA runtime is found",
    "`torch.jit.script` is deprecated",
    "torch.meshgrid: in an upcoming release",
    "pkg_resources is deprecated",
)


def test_training_run_prints_no_start_up_noise(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run(
        [
            sys.executable,
            TRAIN_NET,
            "--config-file",
            QUICKSTART_RETINANET,
            *TINY_OVERRIDES,
            f"train.output_dir={tmp_path}",
            "train.max_iter=1",
            "train.eval_period=0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "Starting training" in output or "iter: 0" in output or "eta" in output, output[-2000:]
    for message in NOISE:
        assert message not in output, message


def test_the_filters_are_narrow():
    """Another FutureWarning / UserWarning, and another cpp_extension log line, still show."""
    code = (
        "import logging, warnings\n"
        "import semianchor\n"
        "logging.basicConfig()\n"
        "warnings.warn('an unrelated future change', FutureWarning)\n"
        "warnings.warn('an unrelated user warning', UserWarning)\n"
        "logging.getLogger('torch.utils.cpp_extension').warning('another cpp_extension message')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in (
        "an unrelated future change",
        "an unrelated user warning",
        "another cpp_extension",
    ):
        assert text in proc.stderr, text
