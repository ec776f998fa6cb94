#!/usr/bin/env python
"""Training-step cost of every method against Detectron2's RetinaNet and FCOS, in one run.

Every model is the CPU quickstart model (R-18-FPN, 64-channel FPN and head, 4 classes, from
scratch; ``configs/quickstart/*_R18_shapes.py``; FCOS and the Noisy-Anchor Faster R-CNN, which have
no quickstart config, get the same recipe, shrink_to_quickstart). The Noisy-Anchor RPN is a
two-stage detector: Detectron2's Faster R-CNN (the same config with Detectron2's RPN) is its
baseline row. PADet keeps its own network (the R-18 encoder at width 0.25 + 64-channel decoder of
its quickstart config: the method is the architecture), with and without the feature alignment
module, and with torchvision's deformable conv for reference. Input: the same ``--batch`` images of
the embedded shapes training split (256 px, or resized to ``--image-size``; no augmentation), the
same for every model. One step = ``model(batch)``, ``sum(losses).backward()``, ``optimizer.step()``
(SGD, momentum 0.9), timed with ``time.perf_counter`` and split by timers around the modules' hooks:

    forward    backbone (forward hooks on ``model.backbone``) + head (on ``model.head``; for
               Faster R-CNN the RPN head, the box head and the box predictor)
    assign     the label assignment: the ``LabelAssigner`` call (ours, every stage of a staged
               assigner), Detectron2's ``label_anchors`` (RetinaNet, FCOS) or
               ``label_and_sample_anchors`` / ``label_and_sample_proposals`` (Faster R-CNN)
    loss       the rest of ``model(batch)``: preprocessing, anchors, the assigner's inputs, losses
    backward   ``backward()``
    optimizer  ``optimizer.step()`` + ``zero_grad()``

The models take their steps in turns (one step of each, round after round), and each reports the
median over ``--steps`` rounds after ``--warmup`` rounds, per phase and for the whole step, for
each ``--threads`` value; ratios to RetinaNet's median step in the same run.

    python benchmarks/bench_train_step.py --threads 1 2 --out benchmarks/results/train_step.json

Time it on a quiet machine: pause every other job (SIGSTOP, then SIGCONT) while it runs.
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

from detectron2.config import LazyCall as L  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402
from detectron2.modeling.matcher import Matcher  # noqa: E402
from detectron2.modeling.proposal_generator import RPN  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

import semianchor.data  # noqa: E402,F401  (registers the embedded splits)
from semianchor.model_zoo import shrink_to_quickstart  # noqa: E402

QS = "configs/quickstart/"
NOISY_RCNN = "configs/COCO-Detection/noisy_anchor_faster_rcnn_R_50_FPN_1x.py"
# name -> (config, overrides "key=value" applied to the model config)
MODELS = {
    "retinanet": (QS + "retinanet_R18_shapes.py", {}),
    "fcos": ("configs/COCO-Detection/fcos_R_50_FPN_1x.py", {}),
    "atss": (QS + "atss_R18_shapes.py", {}),
    "atss_anchor_free": (QS + "atss_anchor_free_R18_shapes.py", {}),
    "dla": (QS + "dla_R18_shapes.py", {}),
    "dla_anchor_based": ("projects/DLA/configs/dla_anchor_based_R18_shapes.py", {}),
    "noisy_anchor_retinanet": (QS + "noisy_anchor_retinanet_R18_shapes.py", {}),
    "faster_rcnn": (NOISY_RCNN, {"proposal_generator": "detectron2_rpn"}),
    "noisy_anchor_faster_rcnn": (NOISY_RCNN, {}),
    "sad": (QS + "sad_R18_shapes.py", {}),
    "padet_fam": (QS + "padet_R18_shapes.py", {}),
    "padet_no_fam": (QS + "padet_R18_shapes.py", {"head.fam_mode": "none"}),
    "padet_fam_torchvision": (QS + "padet_R18_shapes.py", {"head.fam_impl": "torchvision"}),
}


def build_model(name: str):
    path, overrides = MODELS[name]
    cfg = LazyConfig.load(os.path.join(REPO, path))
    if not path.startswith(QS) and "/projects/" not in "/" + path:
        cfg.model = shrink_to_quickstart(cfg.model)  # FCOS, Faster R-CNN: no quickstart config
    for key, value in overrides.items():
        if key == "proposal_generator":  # Detectron2's RPN: the Noisy-Anchor config's baseline
            rpn = cfg.model.proposal_generator
            rpn._target_ = RPN
            del rpn.assigner
            rpn.anchor_matcher = L(Matcher)(
                thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True
            )
            continue
        obj = cfg.model
        *parents, leaf = key.split(".")
        for parent in parents:
            obj = obj[parent]
        obj[leaf] = value
    torch.manual_seed(0)
    return instantiate(cfg.model).train()


def fixed_batch(batch_size: int, image_size=None):
    """The first ``batch_size`` shapes training images (256 x 256), resized to ``image_size``
    (H, W) when given (e.g. 256 341: a 640 x 480 BCCD image under the coco_json quickstart's
    test resize)."""
    dicts = DatasetCatalog.get("semianchor_shapes_train")[:batch_size]
    augmentations = [T.Resize(tuple(image_size))] if image_size else []
    mapper = DatasetMapper(is_train=True, augmentations=augmentations, image_format="BGR")
    return [mapper(d) for d in dicts]


class PhaseTimer:
    """Wall time spent inside the hooked modules / wrapped callables during one step."""

    def __init__(self):
        self.totals = {}
        self._starts = {}

    def start(self, phase):
        self._starts[phase] = time.perf_counter()

    def stop(self, phase):
        elapsed = time.perf_counter() - self._starts.pop(phase)
        self.totals[phase] = self.totals.get(phase, 0.0) + elapsed

    def hook_module(self, module, phase):
        module.register_forward_pre_hook(lambda *_: self.start(phase))
        module.register_forward_hook(lambda *_: self.stop(phase))

    def wrap(self, fn, phase):
        def timed(*args, **kwargs):
            self.start(phase)
            try:
                return fn(*args, **kwargs)
            finally:
                self.stop(phase)

        return timed


class _TimedAssigner:
    """A LabelAssigner whose calls are timed; every other attribute is the assigner's."""

    def __init__(self, assigner, timer):
        self._assigner, self._call = assigner, timer.wrap(assigner, "assign")

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._assigner, name)


def instrument(model, timer: PhaseTimer):
    """Hooks the backbone, the head(s) and the assignment step of ``model``."""
    timer.hook_module(model.backbone, "backbone")
    if hasattr(model, "roi_heads"):  # Faster R-CNN
        rpn, roi = model.proposal_generator, model.roi_heads
        timer.hook_module(rpn.rpn_head, "head")
        timer.hook_module(roi.box_head, "head")
        timer.hook_module(roi.box_predictor, "head")
        if hasattr(rpn, "assigner"):
            rpn.assigner = _TimedAssigner(rpn.assigner, timer)
        else:
            rpn.label_and_sample_anchors = timer.wrap(rpn.label_and_sample_anchors, "assign")
        roi.label_and_sample_proposals = timer.wrap(roi.label_and_sample_proposals, "assign")
        return
    timer.hook_module(model.head, "head")
    if hasattr(model, "assigner"):
        model.assigner = _TimedAssigner(model.assigner, timer)
    else:  # Detectron2's RetinaNet / FCOS
        model.label_anchors = timer.wrap(model.label_anchors, "assign")


class Trainee:
    """One instrumented model with its optimizer; :meth:`step` runs and times one training step."""

    def __init__(self, name: str):
        self.name = name
        self.model = build_model(name)
        self.timer = PhaseTimer()
        instrument(self.model, self.timer)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.records = []

    def step(self, batch, it: int, record: bool):
        timer = self.timer
        timer.totals = {}
        with EventStorage(it):
            t0 = time.perf_counter()
            losses = self.model(batch)
            t1 = time.perf_counter()
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{self.name}: non-finite loss at step {it}: {losses}")
            loss.backward()
            t2 = time.perf_counter()
            self.optimizer.step()
            self.optimizer.zero_grad()
            t3 = time.perf_counter()
        if not record:
            return
        forward = timer.totals.get("backbone", 0.0) + timer.totals.get("head", 0.0)
        assign = timer.totals.get("assign", 0.0)
        self.records.append(
            dict(
                step=t3 - t0,
                forward=forward,
                assign=assign,
                loss=(t1 - t0) - forward - assign,
                backward=t2 - t1,
                optimizer=t3 - t2,
            )
        )

    def medians_ms(self):
        return {k: statistics.median(r[k] for r in self.records) * 1000 for k in self.records[0]}


def time_models(names, batch, steps: int, warmup: int):
    """Round robin: every round runs one step of every model, so that a drift of the machine
    (another process, the clock) spreads over all models instead of falling on a few."""
    trainees = [Trainee(name) for name in names]
    for it in range(warmup + steps):
        for t in trainees:
            t.step(batch, it, record=it >= warmup)
    return {t.name: t.medians_ms() for t in trainees}


def markdown(rows, threads):
    ref = {
        t: next(r for r in rows if r["model"] == "retinanet" and r["threads"] == t) for t in threads
    }
    lines = [
        "| threads | model | step ms | x RetinaNet | forward | assign | loss | backward | "
        "optimizer | assign + loss share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["step"] / ref[r["threads"]]["step"]
        share = (r["assign"] + r["loss"]) / r["step"]
        lines.append(
            f"| {r['threads']} | {r['model']} | {r['step']:.0f} | {ratio:.2f} | "
            f"{r['forward']:.0f} | {r['assign']:.1f} | {r['loss']:.1f} | {r['backward']:.0f} | "
            f"{r['optimizer']:.1f} | {100 * share:.1f} % |"
        )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="default: 256 256")
    p.add_argument("--out", help="json file for the results")
    args = p.parse_args()
    if "retinanet" not in args.models:
        args.models = ["retinanet"] + args.models  # the reference of every ratio
    batch = fixed_batch(args.batch, args.image_size)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        medians = time_models(args.models, batch, args.steps, args.warmup)
        for name in args.models:
            row = dict(model=name, threads=threads, **medians[name])
            rows.append(row)
            print(
                f"{threads} threads  {name:26s} step {row['step']:7.0f} ms  "
                + "  ".join(f"{k} {row[k]:.1f}" for k in ("forward", "assign", "loss", "backward"))
            )
    table = markdown(rows, args.threads)
    print(table)
    if args.out:
        machine = f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}"
        command = "python benchmarks/bench_train_step.py " + " ".join(sys.argv[1:])
        with open(args.out, "w") as f:
            json.dump(dict(command=command, machine=machine, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
