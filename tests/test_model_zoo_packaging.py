"""``semianchor.model_zoo`` works from an installed package, outside the checkout: setup.py ships
``configs/`` as ``semianchor/configs`` package data (what a wheel holds is what ``build_py``
lays out; the compiled extension is not needed to read a config)."""

import os
import subprocess
import sys

from .conftest import REPO

SCRIPT = """
import os, sys
from semianchor import model_zoo
root = model_zoo.get_config_file("COCO-Detection/atss_R_50_FPN_1x.py")
assert root.startswith(sys.argv[1]), root
cfg = model_zoo.get_config("COCO-Detection/atss_R_50_FPN_1x.py")
assert cfg.model._target_.__name__ == "ATSS", cfg.model._target_
cfg = model_zoo.get_config("quickstart/padet_R18_shapes.py")  # relative imports and load_rel
assert cfg.model.head.fam_mode == "disentangled"
cfg = model_zoo.get_config("quickstart/dla_R18_shapes.py")  # load_quickstart finds COCO-Detection
assert cfg.model.backbone.bottom_up.stages.depth == 18 and cfg.train.max_iter == 300
cfg = model_zoo.get_config("yacs/ATSS_R_50_FPN_1x.yaml")
assert cfg.MODEL.META_ARCHITECTURE == "ATSS"
print("ok")
"""


def test_get_config_from_a_package_built_outside_the_checkout(tmp_path):
    lib = tmp_path / "lib"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    packaged = lib / "semianchor" / "configs"
    shipped = {
        os.path.relpath(os.path.join(d, f), os.path.join(REPO, "configs"))
        for d, _, files in os.walk(os.path.join(REPO, "configs"))
        for f in files
        if f.endswith((".py", ".yaml"))
    }
    built = {
        os.path.relpath(os.path.join(d, f), packaged)
        for d, _, files in os.walk(packaged)
        for f in files
        if f.endswith((".py", ".yaml"))
    }
    assert built == shipped and len(shipped) > 50
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(lib)
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(packaged)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
