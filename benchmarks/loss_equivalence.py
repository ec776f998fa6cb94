#!/usr/bin/env python
"""Fixed-seed training losses of every shipped method, to check that a refactoring or a new kernel
changes no behaviour: the same losses before and after.

For each method: the COCO-Detection config, shrunk as the tests shrink it (R-18, 64-channel FPN,
2-conv head, 4 classes, from scratch; SAD and PADet: their quickstart configs, which are that
already, PADet with its own R-18 encoder-decoder), trained for ``--iters`` SGD steps on the first
images of the embedded ``semianchor_shapes_tiny`` split (128 px, deterministic mapping: no
augmentation), batch 2, one intra-op thread, seed 0. Every loss term of every iteration is written
to a json; ``--compare`` checks two such files term by term (exact equality by default, or within
``--rtol``). ``--override METHOD:KEY=VALUE`` changes one method's config (e.g. the kernel a
component uses).

Two modes. ``--mode trajectory`` (default) takes an SGD step after every iteration: the float32
trajectory repeats bit for bit on one machine, torch build and thread count, but on another CPU
(or another thread count) the rounding differs from the first iterations and grows along the
trajectory, to tens of percent by iteration 20. ``--mode fixed`` is the portable check: the
weights stay those of the seeded initialisation and every iteration is a training forward pass
on the next batch (no optimizer step), so every stateful part of a method still advances (EMA
normalisers, iteration-dependent schedules, BN statistics) while a rounding difference cannot
compound: across machines or thread counts the losses agree to float32 rounding, and
``--compare --rtol 1e-4`` holds there. Both modes on one machine: ``--rtol 0``.

    python benchmarks/loss_equivalence.py --out before.json
    python benchmarks/loss_equivalence.py --out after.json --compare before.json
    python benchmarks/loss_equivalence.py --mode fixed --out fixed_before.json
    python benchmarks/loss_equivalence.py --mode fixed --out fixed_after.json \\
        --compare fixed_before.json --rtol 1e-4   # on another machine
"""

import argparse
import copy
import json
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

import semianchor.data  # noqa: E402,F401  (registers the embedded splits)
from semianchor.model_zoo import shrink_to_quickstart  # noqa: E402

NUM_CLASSES = 4  # the shapes classes

# method -> config: the COCO-Detection configs are shrunk by ``shrink``; the quickstart configs
# (SAD, PADet: already R-18 / 64-channel / 4 classes) are used as they are
METHODS = {
    "atss": "configs/COCO-Detection/atss_R_50_FPN_1x.py",
    "atss_anchor_free": "configs/COCO-Detection/atss_anchor_free_R_50_FPN_1x.py",
    "dla": "configs/COCO-Detection/dla_R_50_FPN_1x.py",
    "dla_anchor_based": "projects/DLA/configs/dla_anchor_based_R_50_FPN_1x.py",
    "noisy_anchor_retinanet": "configs/COCO-Detection/noisy_anchor_retinanet_R_50_FPN_1x.py",
    "noisy_anchor_rpn": "configs/COCO-Detection/noisy_anchor_faster_rcnn_R_50_FPN_1x.py",
    "sad": "configs/quickstart/sad_R18_shapes.py",
    "padet": "configs/quickstart/padet_R18_shapes.py",  # APM + FAM (disentangled, D1-D4)
}


def shrink(model):
    """The quickstart model at test size (``shrink_to_quickstart`` with a 2-conv head and the
    config's pixel std), with DLA's alpha schedule that of a 20-iteration run."""
    shrink_to_quickstart(model, num_classes=NUM_CLASSES, head_convs=2, pixel_std=None)
    if "iters_per_epoch" in model:
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


def with_fam_impl(model, impl: str):
    """A copy of ``model`` (same weights, same EMA state) whose PADet feature alignment runs the
    deformable conv with ``impl``; None when the model has no deformable FAM."""
    from semianchor.modeling.heads.padet_head import FeatureAlignment

    if not any(isinstance(m, FeatureAlignment) and m.mode != "none" for m in model.modules()):
        return None
    twin = copy.deepcopy(model)
    for m in twin.modules():
        if isinstance(m, FeatureAlignment):
            m.impl = impl
    return twin


def run(method: str, iters: int, overrides=(), paired_fam_impl=None, mode="trajectory"):
    """The loss history, and with ``paired_fam_impl`` the per-step maximum relative difference
    of every loss term to the same step computed (same weights, batch and EMA state) by a copy
    whose FAM uses that deformable-conv implementation. ``mode="fixed"``: no optimizer step, the
    weights stay the seeded initialisation (see the module docstring)."""
    cfg = LazyConfig.load(os.path.join(REPO, METHODS[method]))
    if "/quickstart/" not in METHODS[method]:
        cfg.model = shrink(cfg.model)
    cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9, weight_decay=1e-4)
    data = batches(8, 2)
    history, paired = [], []
    with EventStorage(0) as storage:
        for it in range(iters):
            storage.iter = it
            twin = with_fam_impl(model, paired_fam_impl) if paired_fam_impl else None
            if twin is not None:
                twin_losses = {k: float(v.detach()) for k, v in twin(data[it % len(data)]).items()}
            losses = model(data[it % len(data)])
            if mode == "trajectory":
                total = sum(losses.values())
                opt.zero_grad()
                total.backward()
                opt.step()
            history.append({k: float(v.detach()) for k, v in sorted(losses.items())})
            if twin is not None:
                a, b = history[-1], twin_losses
                paired.append(max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in a))
    return history, paired


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="json file to write")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument(
        "--mode",
        choices=["trajectory", "fixed"],
        default="trajectory",
        help="trajectory: SGD steps (bit-exact on one machine only); fixed: forward passes from "
        "the seeded weights (portable to float32 rounding)",
    )
    p.add_argument("--threads", type=int, default=1, help="intra-op threads")
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--compare", help="an earlier --out file: report every difference")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (0: exact)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="METHOD:KEY=VALUE",
        help="a config override for one method, e.g. padet:model.head.fam_impl=torchvision",
    )
    p.add_argument(
        "--paired-fam-impl",
        choices=["sampled", "torchvision"],
        help="also compute every step of a model with a deformable FAM with this implementation "
        "from the same weights and batch, and report the per-step relative difference",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {m: [] for m in args.methods}
    for item in args.override:
        method, _, kv = item.partition(":")
        if method not in overrides or "=" not in kv:
            p.error(f"--override {item!r}: expected METHOD:KEY=VALUE with METHOD in {args.methods}")
        overrides[method].append(kv)
    results, paired = {}, {}
    for m in args.methods:
        results[m], diffs = run(m, args.iters, overrides[m], args.paired_fam_impl, args.mode)
        if diffs:
            paired[m] = diffs
            print(
                f"{m}: per-step losses with FAM impl {args.paired_fam_impl} from the same "
                f"weights and batch: max relative difference {max(diffs):.3g}"
            )
        last = results[m][-1]
        print(
            f"{m}: iteration {args.iters - 1}: "
            + ", ".join(f"{k}={v:.6f}" for k, v in last.items())
        )
    meta = {
        "torch": torch.__version__,
        "iters": args.iters,
        "mode": args.mode,
        "threads": args.threads,
        "overrides": args.override,
    }
    record = {"meta": meta, "losses": results}
    if paired:
        record["paired_fam_impl"] = {"impl": args.paired_fam_impl, "max_rel_diff_per_step": paired}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    if args.compare:
        with open(args.compare) as f:
            ref_record = json.load(f)
        ref_mode = ref_record["meta"].get("mode", "trajectory")
        if ref_mode != args.mode:
            p.error(
                f"--compare {args.compare}: recorded in mode {ref_mode!r}, "
                f"this run is {args.mode!r}"
            )
        ref = ref_record["losses"]
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
