#!/usr/bin/env python
"""Fixed-seed training losses of every shipped method, to check that a refactoring of the shared
detector base changes no behaviour (issue 10: "the same losses before and after the redesign").

For each method: the COCO-Detection config, shrunk as the tests shrink it (R-18, 64-channel FPN,
2-conv head, 3 classes, from scratch), trained for ``--iters`` SGD steps on the first images of the
embedded ``semianchor_shapes_tiny`` split (128 px, deterministic mapping: no augmentation), batch 2,
one intra-op thread, seed 0. Every loss term of every iteration is written to a json; ``--compare``
checks two such files term by term (exact equality by default).

    python benchmarks/loss_equivalence.py --out before.json
    python benchmarks/loss_equivalence.py --out after.json --compare before.json
"""

import argparse
import json
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

import semianchor.data  # noqa: E402,F401  (registers the embedded splits)

CHANNELS = 64
NUM_CLASSES = 4  # the shapes classes

METHODS = {
    "atss": "configs/COCO-Detection/atss_R_50_FPN_1x.py",
    "atss_anchor_free": "configs/COCO-Detection/atss_anchor_free_R_50_FPN_1x.py",
    "dla": "configs/COCO-Detection/dla_R_50_FPN_1x.py",
    "dla_anchor_based": "projects/DLA/configs/dla_anchor_based_R_50_FPN_1x.py",
    "noisy_anchor_retinanet": "configs/COCO-Detection/noisy_anchor_retinanet_R_50_FPN_1x.py",
    "noisy_anchor_rpn": "configs/COCO-Detection/noisy_anchor_faster_rcnn_R_50_FPN_1x.py",
}


def shrink(model, rcnn: bool):
    stages = model.backbone.bottom_up.stages
    stages.depth = 18
    stages.pop("stride_in_1x1", None)
    stages.norm = "BN"
    model.backbone.bottom_up.stem.norm = "BN"
    model.backbone.bottom_up.freeze_at = 0
    model.backbone.out_channels = CHANNELS
    if rcnn:
        model.proposal_generator.head.in_channels = CHANNELS
        model.roi_heads.num_classes = NUM_CLASSES
        model.roi_heads.box_head.input_shape = ShapeSpec(channels=CHANNELS, height=7, width=7)
        model.roi_heads.box_head.fc_dims = [CHANNELS, CHANNELS]
        model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=CHANNELS)
        return model
    if model.backbone.top_block.get("in_feature", "res5") == "res5":
        model.backbone.top_block.in_channels = 512
    model.head.input_shape = [ShapeSpec(channels=CHANNELS)] * 5
    model.head.conv_dims = [CHANNELS] * 2
    model.num_classes = NUM_CLASSES
    if "iters_per_epoch" in model:  # DLA: the alpha schedule of a 20-iteration run
        model.iters_per_epoch = 5.0
        model.max_iter = 20
    return model


def batches(num_images: int, batch_size: int):
    dicts = DatasetCatalog.get("semianchor_shapes_tiny")[:num_images]
    mapper = DatasetMapper(
        is_train=True, augmentations=[T.ResizeShortestEdge(128, 128)], image_format="BGR"
    )
    mapped = [mapper(d) for d in dicts]
    return [mapped[i : i + batch_size] for i in range(0, len(mapped), batch_size)]


def run(method: str, iters: int):
    cfg = LazyConfig.load(os.path.join(REPO, METHODS[method]))
    torch.manual_seed(0)
    model = instantiate(shrink(cfg.model, rcnn="roi_heads" in cfg.model))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9, weight_decay=1e-4)
    data = batches(8, 2)
    history = []
    with EventStorage(0) as storage:
        for it in range(iters):
            storage.iter = it
            losses = model(data[it % len(data)])
            total = sum(losses.values())
            opt.zero_grad()
            total.backward()
            opt.step()
            history.append({k: float(v) for k, v in sorted(losses.items())})
    return history


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="json file to write")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--compare", help="an earlier --out file: report every difference")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (0: exact)")
    args = p.parse_args()
    torch.set_num_threads(1)
    results = {}
    for m in args.methods:
        results[m] = run(m, args.iters)
        last = results[m][-1]
        print(
            f"{m}: iteration {args.iters - 1}: "
            + ", ".join(f"{k}={v:.6f}" for k, v in last.items())
        )
    meta = {"torch": torch.__version__, "iters": args.iters}
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "losses": results}, f, indent=1)
    if args.compare:
        with open(args.compare) as f:
            ref = json.load(f)["losses"]
        worst = 0
        for m in args.methods:
            a, b = results[m], ref[m]
            if len(a) != len(b) or any(x.keys() != y.keys() for x, y in zip(a, b)):
                print(f"{m}: DIFFERENT loss terms or lengths")
                worst = 1
                continue
            diffs = [abs(x[k] - y[k]) / max(abs(y[k]), 1e-12) for x, y in zip(a, b) for k in x]
            n_terms = len(diffs)
            print(f"{m}: {n_terms} loss values, max relative difference {max(diffs):.3g}")
            if max(diffs) > args.rtol:
                worst = 1
        print("IDENTICAL" if worst == 0 else "DIFFERENCES FOUND")
        sys.exit(worst)


if __name__ == "__main__":
    main()
