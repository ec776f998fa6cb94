#!/usr/bin/env python
"""SAD's speed claim (Table 1: "even with 25 anchors, the proposed algorithm is faster than
RetinaNet with 9 anchors"): inference time per image of R-50-FPN models at 800x1333, in one run.

Models (randomly initialised: speed does not depend on the weights, except through how many
candidates pass the score gate, so each model is timed twice): SAD with 25 anchors
(``configs/COCO-Detection/sad_R_50_FPN_1x.py``), SAD with 1 anchor (Table 1's 1x1 row) and
RetinaNet #A=9 (``configs/COCO-Detection/retinanet_R_50_FPN_1x.py``, Detectron2's RetinaNet).
  - ``gate``: the configs' own test threshold (0.05); random heads start at p = 0.01 (the focal
    prior), so almost nothing passes: backbone + head + a near-empty post-processing;
  - ``full``: threshold 0, so every level fills its 1000 candidates and NMS sees 5000 boxes: the
    worst-case post-processing, equal for every model.
Time = ``model([image])`` in eval mode (preprocessing, backbone, head, decoding, NMS), median
of ``--repeats`` after ``--warmup`` runs, one image, ``--threads`` intra-op threads.

    python benchmarks/bench_sad_inference.py --repeats 11 \
        --out benchmarks/results/sad_inference.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from detectron2.config import LazyConfig, instantiate  # noqa: E402

MODELS = {
    "sad_A25": "configs/COCO-Detection/sad_R_50_FPN_1x.py",
    "sad_A1": "projects/SAD/configs/table1_sad_1x1_R_50_FPN_1x.py",
    "retinanet_A9": "configs/COCO-Detection/retinanet_R_50_FPN_1x.py",
}


def set_threshold(model, value):
    for attr in ("test_score_thresh", "test_score_threshold"):  # ours / Detectron2's RetinaNet
        if hasattr(model, attr):
            setattr(model, attr, value)
            return
    raise AttributeError(f"{type(model).__name__} has no score threshold attribute")


def time_model(model, image, warmup, repeats, height=None, width=None):
    """Median ms of ``model([image])`` (eval, no grad) over ``repeats`` after ``warmup`` runs;
    detections are rescaled to ``height`` x ``width`` (default: the image's own size)."""
    h, w = height or image.shape[1], width or image.shape[2]
    inputs = [{"image": image, "height": h, "width": w}]
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            out = model(inputs)
            elapsed = time.perf_counter() - start
            if i >= warmup:
                times.append(elapsed * 1000)
    return statistics.median(times), times, len(out[0]["instances"])


def write_record(path, command, threads, rows, **extra):
    """The speed record (command, machine, rows and ``extra`` fields) as json at ``path``; nothing
    when ``path`` is empty."""
    if not path:
        return
    machine = (
        f"{platform.machine()} {os.cpu_count()} cpus, {threads} threads, torch {torch.__version__}"
    )
    with open(path, "w") as f:
        json.dump(dict(command=command, machine=machine, **extra, rows=rows), f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=(800, 1333), metavar=("H", "W"))
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--out", help="json file for the results")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    image = torch.randint(0, 255, (3, *args.size), dtype=torch.uint8).float()
    rows = []
    for name in args.models:
        cfg = LazyConfig.load(os.path.join(REPO, MODELS[name]))
        model = instantiate(cfg.model).eval()
        for mode, thresh in (("gate", None), ("full", 0.0)):
            if thresh is not None:
                set_threshold(model, thresh)
            median, times, dets = time_model(model, image, args.warmup, args.repeats)
            rows.append(
                dict(
                    model=name,
                    mode=mode,
                    median_ms=round(median, 1),
                    detections=dets,
                    times_ms=[round(t, 1) for t in times],
                )
            )
            print(f"{name:14s} {mode:5s} median {median:8.1f} ms  ({dets} detections)", flush=True)
    command = "python " + " ".join(sys.argv)
    write_record(args.out, command, args.threads, rows, image=list(args.size))


if __name__ == "__main__":
    main()
