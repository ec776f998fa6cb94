#!/usr/bin/env python
"""How often does a short from-scratch run of a method fail to learn to regress boxes?

Seeds x methods on a small one-class dataset of 1-3 large objects per image (the regime where
the failure was first seen: few, large objects), each run ``tools/lazyconfig_train_net.py`` with
the method's quickstart COCO-json config, shrunk to small images so one run takes about a minute
on 2 CPU cores. A run is a *failure* when its AP is below half the median AP of that method's
seeds (the criterion of the original failure report). Records go to
``<results-dir>/<tag>/<method>_seed<S>.json`` (default ``benchmarks/results/dla_collapse``), run
folders to ``<output-dir>/<tag>/<method>_seed<S>``.

Datasets (``--dataset``), written once under ``--data-dir`` (default ``output/dla_collapse_data``):

* ``large_shapes`` (default): generated here, deterministic: 160 training and 48 validation images
  of 128-224 px, each with 1-3 objects of one class ("object": filled ellipses, rectangles and
  rings, 35-80 % of the image side, aspect 0.6-1.6) on a noisy textured background with small
  unlabelled clutter.
* ``bccd_wbc``: BCCD (``semianchor/data/builtin/bccd``) restricted to its large WBC class.

    python benchmarks/dla_collapse.py --tag before --methods dla,atss_anchor_free,dla_anchor_based \
        --seeds 0-7
    python benchmarks/dla_collapse.py --tag after --methods dla --seeds 0-7
    python benchmarks/dla_collapse.py --summary          # the tables of every recorded tag

Extra ``key=value`` overrides after ``--`` go to every run (e.g.
``-- model.head.regression_activation=relu``, the plain ReLU);
``--tag`` names the set of runs they belong to.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results", "dla_collapse")
METRICS = ("AP", "AP50", "AP75")
sys.path.insert(0, os.path.join(REPO, "benchmarks"))  # also when loaded by path, not run

# a sibling module (benchmarks/ is sys.path[0]), not a third-party package: keep it last
from benchmark_records import final_metrics  # noqa: E402  # isort: skip

METHODS = {
    "dla": "configs/quickstart/dla_R18_coco_json.py",
    "atss_anchor_free": "configs/quickstart/atss_anchor_free_R18_coco_json.py",
    "dla_anchor_based": "projects/DLA/configs/dla_anchor_based_R18_coco_json.py",
    "atss": "configs/quickstart/atss_R18_coco_json.py",
}


def small_images(train_sizes, test_size):
    """The quickstart recipe (shortest edge 224-288 px for training, 256 for testing) shrunk."""
    sizes = ",".join(str(int(v)) for v in train_sizes.split(","))
    return [
        f"dataloader.train.mapper.augmentations.0.short_edge_length=[{sizes}]",
        f"dataloader.train.mapper.augmentations.0.max_size={2 * int(test_size)}",
        f"dataloader.test.mapper.augmentations.0.short_edge_length={int(test_size)}",
        f"dataloader.test.mapper.augmentations.0.max_size={2 * int(test_size)}",
    ]


# ----------------------------------------------------------------------------- data
def _render_large_shapes(rng):
    """One image (uint8 HxWx3 BGR) with 1-3 large objects and their XYXY boxes."""
    import cv2

    h, w = (int(v) for v in rng.integers(128, 225, size=2))
    base = rng.uniform(40, 200, size=3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = (xx / w - 0.5)[..., None] * rng.uniform(-60, 60, size=3) + (yy / h - 0.5)[
        ..., None
    ] * rng.uniform(-60, 60, size=3)
    image = base + grad + 14 * rng.standard_normal((h, w, 3))
    for _ in range(int(rng.integers(3, 9))):  # small unlabelled clutter
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        r = int(rng.integers(2, 7))
        cv2.circle(image, c, r, tuple(float(v) for v in rng.uniform(0, 255, size=3)), -1)
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(20):
            side = rng.uniform(0.35, 0.8) * min(h, w)
            ratio = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
            bw, bh = min(side / np.sqrt(ratio), 0.95 * w), min(side * np.sqrt(ratio), 0.95 * h)
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            box = [x0, y0, x0 + bw, y0 + bh]
            if all(_overlap(box, b) < 0.4 for b in boxes):  # no object mostly hidden
                break
        else:
            continue
        color = base + rng.choice([-1, 1], size=3) * rng.uniform(50, 110, size=3)
        mask = np.zeros((h, w), dtype=np.uint8)
        center = (int(round(x0 + bw / 2)), int(round(y0 + bh / 2)))
        axes = (max(int(bw / 2), 1), max(int(bh / 2), 1))
        kind = int(rng.integers(3))
        if kind == 0:
            cv2.ellipse(mask, center, axes, 0, 0, 360, 1, -1)
        elif kind == 1:
            cv2.rectangle(mask, (int(x0), int(y0)), (int(x0 + bw) - 1, int(y0 + bh) - 1), 1, -1)
        else:
            cv2.ellipse(mask, center, axes, 0, 0, 360, 1, max(int(min(bw, bh) * 0.2), 2))
        ys, xs = np.nonzero(mask)
        image[mask > 0] = np.clip(color, 0, 255)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])  # the drawn extent
    image = np.clip(image + 6 * rng.standard_normal((h, w, 3)), 0, 255).astype(np.uint8)
    return image, [[float(v) for v in b] for b in boxes]


def _overlap(a, b):
    """Intersection over the smaller box's area."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller if smaller > 0 else 0.0


def make_large_shapes(root, num_train=160, num_val=48, seed=16):
    """Write ``root/images/*.jpg`` and ``root/{train,val}.json`` (COCO) once; returns paths."""
    import cv2

    paths = {s: os.path.join(root, f"{s}.json") for s in ("train", "val")}
    images_dir = os.path.join(root, "images")
    if all(os.path.exists(p) for p in paths.values()):
        return paths["train"], paths["val"], images_dir
    os.makedirs(images_dir, exist_ok=True)
    for split, count, offset in (("train", num_train, 0), ("val", num_val, 100_000)):
        images, annotations = [], []
        for i in range(count):
            rng = np.random.default_rng([seed, offset + i])
            image, boxes = _render_large_shapes(rng)
            name = f"{split}_{i:04d}.jpg"
            cv2.imwrite(os.path.join(images_dir, name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            image_id = offset + i + 1
            images.append(
                {
                    "id": image_id,
                    "file_name": name,
                    "height": image.shape[0],
                    "width": image.shape[1],
                }
            )
            for x0, y0, x1, y1 in boxes:
                annotations.append(
                    {
                        "id": len(annotations) + 1 + offset,
                        "image_id": image_id,
                        "category_id": 1,
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": (x1 - x0) * (y1 - y0),
                        "iscrowd": 0,
                    }
                )
        content = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 1, "name": "object"}],
        }
        with open(paths[split], "w") as f:
            json.dump(content, f)
    return paths["train"], paths["val"], images_dir


def make_bccd_wbc(root):
    """BCCD's json files restricted to the WBC class (images without a WBC dropped)."""
    src = os.path.join(REPO, "semianchor", "data", "builtin", "bccd")
    os.makedirs(root, exist_ok=True)
    out = {}
    for split in ("train", "val"):
        with open(os.path.join(src, "annotations", f"{split}.json")) as f:
            data = json.load(f)
        (wbc,) = [c["id"] for c in data["categories"] if c["name"].upper() == "WBC"]
        anns = [dict(a, category_id=1) for a in data["annotations"] if a["category_id"] == wbc]
        keep = {a["image_id"] for a in anns}
        data = {
            "images": [im for im in data["images"] if im["id"] in keep],
            "annotations": anns,
            "categories": [{"id": 1, "name": "WBC"}],
        }
        out[split] = os.path.join(root, f"{split}.json")
        with open(out[split], "w") as f:
            json.dump(data, f)
    return out["train"], out["val"], os.path.join(src, "images")


# ----------------------------------------------------------------------------- runs
def training_curve(output_dir, keys=("loss_dla_box", "loss_box_reg", "loss_dense_box")):
    """The logged box-loss values (iteration, value) of a run, whichever prefix it uses."""
    curve = []
    with open(os.path.join(output_dir, "metrics.json")) as f:
        for line in f:
            rec = json.loads(line)
            for k in rec:
                if k.startswith("loss_") and k.endswith("_box"):
                    curve.append((rec["iteration"], round(rec[k], 4)))
    return curve


def shown(path):
    """A path as a record shows it: relative to the repository, else ``$DATA/<name>``."""
    path = os.path.abspath(path)
    if path.startswith(REPO + os.sep):
        return os.path.relpath(path, REPO)
    return "$DATA/" + os.path.basename(path)


def run_one(args, data, method, seed):
    json_train, json_val, image_root = data
    run_name = f"{method}_seed{seed}"
    output_dir = os.path.join(args.output_dir, args.tag, run_name)
    overrides = (
        [
            f"train.output_dir={output_dir}",
            f"train.seed={seed}",
            f"train.max_iter={args.max_iter}",
            f"train.log_period={args.log_period}",
            f"train.checkpointer.period={10 * args.max_iter}",
            "model.num_classes=1",
            f"dataloader.train.dataset.json_file={json_train}",
            f"dataloader.train.dataset.image_root={image_root}",
            f"dataloader.test.dataset.json_file={json_val}",
            f"dataloader.test.dataset.image_root={image_root}",
            # the json files differ per dataset: register each under its own name
            f"dataloader.train.dataset.name=dla_collapse_{args.dataset}_train",
            f"dataloader.test.dataset.name=dla_collapse_{args.dataset}_val",
        ]
        + small_images(args.train_sizes, args.test_size)
        + list(args.opts)
    )
    cmd = [sys.executable, "tools/lazyconfig_train_net.py", "--config-file", METHODS[method]]
    cmd += ["--num-gpus", "1", "--no-report"] + overrides
    text = "python " + " ".join(cmd[1:])
    for p in (json_train, json_val, image_root, args.output_dir):
        text = text.replace(p, shown(p))
    print(f"[{args.tag}] {text}", flush=True)
    abs_out = os.path.join(REPO, output_dir)
    os.makedirs(abs_out, exist_ok=True)
    start = time.time()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    with open(os.path.join(abs_out, "bench_log.txt"), "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{run_name} failed (exit {proc.returncode}); see {abs_out}/bench_log.txt"
        )
    record = {
        "tag": args.tag,
        "dataset": args.dataset,
        "method": method,
        "seed": seed,
        "iterations": args.max_iter,
        "metrics": final_metrics(abs_out, METRICS)[0],
        "box_loss_curve": training_curve(abs_out),
        "command": text,
        "commit": _git_commit(),
        "wall_seconds": round(wall, 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "date": time.strftime("%Y-%m-%d"),
    }
    folder = os.path.join(args.results_dir, args.tag)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{run_name}.json"), "w") as f:
        json.dump(record, f, indent=1)
    print(f"[{args.tag}] {run_name}: AP {record['metrics']['AP']:.2f} in {wall:.0f}s", flush=True)
    return record


def _git_commit():
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


# ----------------------------------------------------------------------------- inspection
def inspect_run(record, run_dir, data, num_images=8):
    """Per ltrb channel of an anchor-free run: share of outputs at 0 at initialisation (the model
    rebuilt with the run's seed, training-mode forward on the first training images at the test
    size) and after training (same images), plus the trained output bias. A channel at 0 on
    every location at the end, with its bias still exactly 0 (its initial value), never got a
    gradient."""
    import cv2
    import torch

    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate
    from detectron2.utils.env import seed_all_rng

    import semianchor  # noqa: F401

    cfg = LazyConfig.load(os.path.join(REPO, METHODS[record["method"]]))
    # the run's model overrides (e.g. a tag's head activation)
    model_opts = [o for o in record["command"].split() if o.startswith("model.")]
    LazyConfig.apply_overrides(cfg, model_opts)
    if cfg.model.box_coder._target_.__name__ != "LTRBBoxCoder":
        return None
    json_train, _, image_root = data
    with open(json_train) as f:
        files = [im["file_name"] for im in json.load(f)["images"][:num_images]]
    size = int(
        re.search(r"test.mapper.augmentations.0.short_edge_length=(\d+)", record["command"]).group(
            1
        )
    )
    batch = []
    for name in files:
        img = cv2.imread(os.path.join(image_root, name))
        scale = size / min(img.shape[:2])
        img = cv2.resize(img, None, fx=scale, fy=scale)
        batch.append({"image": torch.as_tensor(img.transpose(2, 0, 1).copy()).float()})

    def zero_share(model):
        model.train()  # BN on batch statistics, as in the first training steps
        with torch.no_grad():
            images = model.preprocess_image(batch)
            feats = model.backbone(images.tensor)
            out = model.head([feats[f] for f in model.head_in_features])
        reg = torch.cat([r.permute(0, 2, 3, 1).reshape(-1, 4) for r in out["reg"]])
        return [round(float(v), 3) for v in (reg <= 0).float().mean(0)]

    seed_all_rng(record["seed"])
    model = instantiate(cfg.model)
    at_init = zero_share(model)
    init_bias = model.head.bbox_pred.bias.detach().clone()
    DetectionCheckpointer(model).load(os.path.join(run_dir, "model_final.pth"))
    bias = model.head.bbox_pred.bias.detach()
    return {
        "ltrb_zero_share_at_init": at_init,
        "ltrb_zero_share_final": zero_share(model),
        "ltrb_bias_final": [round(float(v), 4) for v in bias],
        "ltrb_bias_untouched": [bool(v) for v in (bias == init_bias)],
    }


def inspect_tag(args, data):
    """Adds ``inspection`` (see :func:`inspect_run`) to every anchor-free record of ``--tag``."""
    folder = os.path.join(args.results_dir, args.tag)
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        with open(path) as f:
            record = json.load(f)
        run_dir = os.path.join(REPO, args.output_dir, args.tag, name[: -len(".json")])
        if not os.path.exists(os.path.join(run_dir, "model_final.pth")):
            continue
        info = inspect_run(record, run_dir, data)
        if info is None:
            continue
        record["inspection"] = info
        with open(path, "w") as f:
            json.dump(record, f, indent=1)
        print(f"{name}: AP {record['metrics']['AP']:.2f} {info}", flush=True)


# ----------------------------------------------------------------------------- summary
def failures(aps):
    """Indices of runs whose AP is below half the median of the runs (the failure criterion)."""
    med = statistics.median(aps)
    return [i for i, ap in enumerate(aps) if ap < 0.5 * med]


def summary(results_dir):
    """Markdown: per tag and method, per-seed AP (AP50), median, failure count."""
    lines = []
    for tag in sorted(os.listdir(results_dir)) if os.path.isdir(results_dir) else []:
        folder = os.path.join(results_dir, tag)
        if not os.path.isdir(folder):
            continue
        recs = {}
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                with open(os.path.join(folder, name)) as f:
                    r = json.load(f)
                recs.setdefault(r["method"], []).append(r)
        if not recs:
            continue
        seeds = sorted({r["seed"] for rs in recs.values() for r in rs})
        lines += [f"### {tag}", ""]
        lines.append(
            "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | median AP | failures |"
        )
        lines.append("|---" * (len(seeds) + 3) + "|")
        for method, rs in sorted(recs.items()):
            by_seed = {r["seed"]: r for r in rs}
            aps = [by_seed[s]["metrics"]["AP"] for s in seeds if s in by_seed]
            fail = failures(aps)
            fail_seeds = {[s for s in seeds if s in by_seed][i] for i in fail}
            cells = []
            for s in seeds:
                if s not in by_seed:
                    cells.append("-")
                    continue
                m = by_seed[s]["metrics"]
                cell = f"{m['AP']:.2f} ({m['AP50']:.1f})"
                cells.append(f"**{cell}**" if s in fail_seeds else cell)
            lines.append(
                f"| {method} | "
                + " | ".join(cells)
                + f" | {statistics.median(aps):.2f} | {len(fail)}/{len(aps)} |"
            )
        lines.append("")
    return "\n".join(lines)


def parse_seeds(text):
    seeds = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            seeds += list(range(int(lo), int(hi) + 1))
        elif part:
            seeds.append(int(part))
    return seeds


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", choices=("large_shapes", "bccd_wbc"), default="large_shapes")
    p.add_argument("--data-dir", default=os.path.join("output", "dla_collapse_data"))
    p.add_argument("--methods", default="dla,atss_anchor_free,dla_anchor_based")
    p.add_argument("--seeds", default="0-7", help="e.g. 0-7 or 0,3,5")
    p.add_argument("--max-iter", type=int, default=60)
    p.add_argument("--train-sizes", default="80,96,112", help="training shortest edges (px)")
    p.add_argument("--test-size", type=int, default=96, help="test shortest edge (px)")
    p.add_argument("--log-period", type=int, default=10)
    p.add_argument("--tag", default="before", help="name of this set of runs (results subfolder)")
    p.add_argument("--output-dir", default=os.path.join("output", "dla_collapse"))
    p.add_argument("--results-dir", default=RESULTS)
    p.add_argument("--summary", action="store_true", help="only print the tables")
    p.add_argument("--data-only", action="store_true", help="only write the dataset")
    p.add_argument(
        "--inspect",
        action="store_true",
        help="no training: add the ltrb channels at init / after training to --tag's records",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="-- key=value overrides for every run")
    args = p.parse_args()
    args.opts = [o for o in args.opts if o != "--"]
    if args.summary:
        print(summary(args.results_dir))
        return
    data_dir = os.path.abspath(os.path.join(REPO, args.data_dir, args.dataset))
    if args.dataset == "large_shapes":
        data = make_large_shapes(data_dir)
    else:
        data = make_bccd_wbc(data_dir)
    if args.data_only:
        print(data)
        return
    if args.inspect:
        inspect_tag(args, data)
        return
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"unknown methods {unknown}; known: {sorted(METHODS)}")
    for seed in parse_seeds(args.seeds):
        for method in methods:
            run_one(args, data, method, seed)
    print(summary(args.results_dir))


if __name__ == "__main__":
    main()
