#!/usr/bin/env python
"""SAD's "without AC" arm (Table 2) over N draws of its random anchor pick: COCO AP of one
trained model evaluated with ``model.noac_draw`` = 0 .. N-1, their mean and best.

Without the anchor-classification head, one random anchor per positive location carries the
location probability; each image's pick is seeded by (draw, image id) (``SemiAnchoredDetector``),
so a draw is one fixed pattern per image. The paper repeats its no-AC experiment 10 times and
reports the best; training is the same for every draw here (the pick only exists at test time),
so the spread is the pick's alone. Example (the BCCD A = 2 arm trained by
``benchmarks/train_assigners.py``)::

    python benchmarks/sad_noac_draws.py --draws 10 \\
        --config-file projects/SAD/configs/sad_A2_noac_R18_coco_json.py \\
        --weights output/bench/bccd/sad_A2_noac/model_final.pth \\
        --out benchmarks/results/bccd/sad_A2_noac_draws.json \\
        dataloader.test.dataset.json_file=$BCCD/annotations/val.json \\
        dataloader.test.dataset.image_root=$BCCD/images model.num_classes=3
"""

import argparse
import json
import os
import sys
from typing import Dict, List

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# semianchor first: it installs its narrow filters for the dependencies' start-up warnings
# before Detectron2's modules emit them, and registers its META_ARCHs and datasets
import semianchor  # noqa: E402,F401  # isort: skip
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.evaluation import inference_on_dataset  # noqa: E402

# a sibling script (benchmarks/ is sys.path[0]), not a third-party package: keep it last
from benchmark_records import save_record  # noqa: E402  # isort: skip
from train_assigners import portable_command  # noqa: E402  # isort: skip

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def summarize(per_draw: List[Dict[str, float]], key: str = "AP") -> Dict[str, object]:
    """Mean of every metric over the draws and the best draw by ``key``."""
    if not per_draw:
        raise ValueError("no draws to summarize")
    metrics = [m for m in METRICS if all(m in d for d in per_draw)]
    mean = {m: round(sum(d[m] for d in per_draw) / len(per_draw), 2) for m in metrics}
    best = max(range(len(per_draw)), key=lambda i: per_draw[i][key])
    return {"mean": mean, "best_draw": best, "best": per_draw[best]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--draws", type=int, default=10)
    p.add_argument("--out")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.draws < 1:
        raise SystemExit("--draws must be >= 1")
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    if cfg.model.get("num_classes", None) is None:
        raise SystemExit("give model.num_classes=K")
    model = instantiate(cfg.model)
    if "ac" in model.head_outputs:
        raise SystemExit("the model has an AC head: its inference draws nothing")
    DetectionCheckpointer(model).load(args.weights)
    model.eval()
    per_draw = []
    for draw in range(args.draws):
        model.noac_draw = draw
        with torch.no_grad():
            results = inference_on_dataset(
                model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
            )
        if "bbox" not in results:  # COCOEvaluator returns nothing without a single detection
            print(f"draw {draw}: no detections at all: COCO AP of an empty result, 0")
            results = {"bbox": {m: 0.0 for m in METRICS}}
        res = results["bbox"]
        per_draw.append({m: round(float(res[m]), 2) for m in METRICS if m in res})
        print(f"draw {draw}: " + ", ".join(f"{k} {v}" for k, v in per_draw[-1].items()))
    result = {"draws": per_draw, **summarize(per_draw)}
    result.update(
        config=os.path.relpath(os.path.abspath(args.config_file), REPO),
        weights=os.path.relpath(os.path.abspath(args.weights), REPO),
        command=portable_command(
            "python benchmarks/sad_noac_draws.py " + " ".join(sys.argv[1:]), "bccd"
        ),
    )
    print(json.dumps({k: result[k] for k in ("mean", "best_draw", "best")}, indent=1))
    return save_record(result, args.out)


if __name__ == "__main__":
    main()
