#!/usr/bin/env python
"""Train + evaluate several methods under the same schedule and record their COCO AP.

Each run is ``tools/lazyconfig_train_net.py --config-file <method config> --num-gpus 1`` in a
subprocess (the quickstart recipe: R-18-FPN 64 channels from scratch, batch 8, the quickstart
iterations), one after the other; results go to ``<results-dir>/<dataset>/<method>.json``
(default ``benchmarks/results``), runs to ``<output-dir>/<dataset>/<method>`` (default
``output/bench``). The tracked table ``benchmarks/ASSIGNERS.md`` is rebuilt from every recorded
result only when asked (``--write-table``, or ``--table-only``).

Records are portable: a command shows the dataset's files as ``$<FOLDER>/...`` (``$BCCD`` for
the BCCD folder holding the json files and images) and paths inside the repository
relative to it, never a machine's absolute paths.

    python benchmarks/train_assigners.py --dataset shapes --methods retinanet,atss,dla
    python benchmarks/train_assigners.py --dataset coco_json --name bccd \
        --json-train /data/bccd/annotations/train.json --json-val /data/bccd/annotations/val.json \
        --image-root /data/bccd/images --num-classes 3 --methods retinanet,atss
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
sys.path.insert(0, os.path.join(REPO, "benchmarks"))  # also when loaded by path, not run

# a sibling module (benchmarks/ is sys.path[0]), not a third-party package: keep it last
from benchmark_records import METRICS, final_metrics  # noqa: E402  # isort: skip

# method -> (shapes config, COCO-json config)
METHODS = {
    "retinanet": ("retinanet_R18_shapes.py", "retinanet_R18_coco_json.py"),
    "atss": ("atss_R18_shapes.py", "atss_R18_coco_json.py"),
    "atss_anchor_free": ("atss_anchor_free_R18_shapes.py", "atss_anchor_free_R18_coco_json.py"),
    "dla": ("dla_R18_shapes.py", "dla_R18_coco_json.py"),
    "dla_anchor_based": (
        "../../projects/DLA/configs/dla_anchor_based_R18_shapes.py",
        "../../projects/DLA/configs/dla_anchor_based_R18_coco_json.py",
    ),
    "noisy_anchor_retinanet": (
        "noisy_anchor_retinanet_R18_shapes.py",
        "noisy_anchor_retinanet_R18_coco_json.py",
    ),
    "sad": ("sad_R18_shapes.py", "sad_R18_coco_json.py"),
    # SAD's Table 2 analogue: A = 2 with and without the anchor-classification head (COCO json only)
    "sad_A2": (None, "../../projects/SAD/configs/sad_A2_R18_coco_json.py"),
    "sad_A2_noac": (None, "../../projects/SAD/configs/sad_A2_noac_R18_coco_json.py"),
    # SAD's open choices: R2 regression targets, the QFL-style AC loss (COCO json only)
    "sad_R2": (None, "../../projects/SAD/configs/sad_R2_R18_coco_json.py"),
    "sad_qfl": (None, "../../projects/SAD/configs/sad_qfl_R18_coco_json.py"),
    # SAD's Table 3 location labelling: FCOS / FCOS-Shrink instead of Eq. 4
    "sad_fcos": (None, "../../projects/SAD/configs/sad_fcos_R18_coco_json.py"),
    "sad_fcos_shrink": (None, "../../projects/SAD/configs/sad_fcos_shrink_R18_coco_json.py"),
    # PADet's Table 2 analogue: no APM / APM / APM + FAM, one schedule (COCO json only)
    "padet_baseline": (None, "../../projects/PADet/configs/padet_baseline_R18_coco_json.py"),
    "padet_apm": (None, "../../projects/PADet/configs/padet_apm_R18_coco_json.py"),
    "padet_apm_fam": (None, "../../projects/PADet/configs/padet_apm_fam_R18_coco_json.py"),
    # the FAM diagnostic: the FAM's offset branch frozen at zero / its gradient x 0.1
    **{
        f"padet_apm_fam_offset_gradmul{m}": (
            None,
            f"../../projects/PADet/configs/padet_apm_fam_offset_gradmul{m}_R18_coco_json.py",
        )
        for m in ("0", "0p1")
    },
    # the same three arms with the paper's loss (no hard-negative mining, / this step's positives)
    **{
        f"padet_{arm}_paper_loss": (
            None,
            f"../../projects/PADet/configs/padet_{arm}_paper_loss_R18_coco_json.py",
        )
        for arm in ("baseline", "apm", "apm_fam")
    },
    # Noisy Anchors' loss normaliser ablation (the paper does not state it)
    "noisy_norm_positives": (
        None,
        "../../projects/NoisyAnchors/configs/"
        "noisy_anchor_retinanet_R18_coco_json_norm_positives.py",
    ),
    "noisy_norm_soft_targets": (
        None,
        "../../projects/NoisyAnchors/configs/"
        "noisy_anchor_retinanet_R18_coco_json_norm_soft_targets.py",
    ),
    "noisy_norm_retinanet_matched": (
        None,
        "../../projects/NoisyAnchors/configs/"
        "noisy_anchor_retinanet_R18_coco_json_norm_retinanet_matched.py",
    ),
}
# the methods' own training statistics (the scalars their detectors log, e.g. SAD's IoU after
# regression, PADet's promotion counts and FAM offsets), kept in the record
_METHOD_SCALAR_PREFIXES = ("atss/", "dla/", "noisy/", "sad/", "padet/")


def training_scalars(output_dir):
    """The methods' logged scalars of a run (``metrics.json``: each row holds the median of a
    logging window): per scalar, the last logged value and the mean over the rows of the second
    half of training."""
    rows = []
    with open(os.path.join(output_dir, "metrics.json")) as f:
        for line in f:
            rec = json.loads(line)
            if "iteration" in rec and "bbox/AP" not in rec:
                rows.append(rec)
    if not rows:
        return {}
    half = rows[-1]["iteration"] / 2
    out = {}
    for key in sorted({k for r in rows for k in r if k.startswith(_METHOD_SCALAR_PREFIXES)}):
        values = [(r["iteration"], r[key]) for r in rows if key in r]
        late = [v for it, v in values if it >= half]
        out[key] = {
            "last": round(values[-1][1], 6),
            "mean_second_half": round(sum(late) / len(late), 6) if late else None,
        }
    return out


_DATA_KEYS = ("json_file", "image_root")


def portable_command(command: str, dataset: str) -> str:
    """``command`` with the dataset's absolute paths (``*.json_file=`` / ``*.image_root=``) written
    as ``$<FOLDER>/<path below their common folder FOLDER>`` and the repository's prefix dropped."""
    pattern = re.compile(r"(\.(?:%s)=)(/\S+)" % "|".join(_DATA_KEYS))
    paths = [m.group(2) for m in pattern.finditer(command)]
    if paths:
        root = os.path.commonpath([os.path.dirname(p) if p.endswith(".json") else p for p in paths])
        if len(paths) == 1 or root == "/":
            root = os.path.dirname(paths[0])
        # named after the data folder ($BCCD for .../bccd), whatever the results' name
        placeholder = "$" + re.sub(r"\W", "_", os.path.basename(root) or dataset).upper()

        def swap(m):
            rel = os.path.relpath(m.group(2), root)
            return m.group(1) + (placeholder if rel == "." else f"{placeholder}/{rel}")

        command = pattern.sub(swap, command)
    return command.replace(REPO + os.sep, "")


def record_command(command: str, dataset: str, output_dir: str) -> str:
    """A run's command as its record shows it: :func:`portable_command`, and an absolute
    ``--output-dir`` (a folder outside the repository) as ``$OUTPUT_DIR``."""
    shown = portable_command(command, dataset)
    if os.path.isabs(output_dir):
        shown = shown.replace(output_dir.rstrip(os.sep), "$OUTPUT_DIR")
    return shown


def _shown_dir(path: str) -> str:
    """A run folder as a record shows it: relative to the repository when inside it."""
    path = os.path.abspath(os.path.join(REPO, path))
    return os.path.relpath(path, REPO) if path.startswith(REPO + os.sep) else "$OUTPUT_DIR"


def run_max_iter(config_yaml: str) -> int:
    """``train.max_iter`` of a run's saved LazyConfig: the schedule really run (not a model's own
    ``max_iter``, such as DLA's alpha-schedule length, which the text may list first)."""
    from detectron2.config import LazyConfig

    return int(LazyConfig.load(config_yaml).train.max_iter)


def run_one(args, method):
    shapes_cfg, json_cfg = METHODS[method]
    if (shapes_cfg if args.dataset == "shapes" else json_cfg) is None:
        raise ValueError(f"{method} has no {args.dataset} config")
    config = os.path.join(
        "configs", "quickstart", shapes_cfg if args.dataset == "shapes" else json_cfg
    )
    output_dir = os.path.join(args.output_dir, args.name, method)
    cmd = [
        sys.executable,
        "tools/lazyconfig_train_net.py",
        "--config-file",
        config,
        "--num-gpus",
        "1",
    ]
    overrides = [f"train.output_dir={output_dir}", f"train.seed={args.seed}"]
    if args.max_iter:
        overrides.append(f"train.max_iter={args.max_iter}")
    if args.dataset == "coco_json":
        overrides += [
            f"model.num_classes={args.num_classes}",
            f"dataloader.train.dataset.json_file={args.json_train}",
            f"dataloader.train.dataset.image_root={args.image_root}",
            f"dataloader.test.dataset.json_file={args.json_val}",
            f"dataloader.test.dataset.image_root={args.image_root}",
        ]
    overrides += args.opts
    shown = record_command(" ".join(cmd[1:] + overrides), args.name, args.output_dir)
    print(f"[{method}] python {shown}", flush=True)
    os.makedirs(output_dir, exist_ok=True)
    start = time.time()
    with open(os.path.join(output_dir, "bench_log.txt"), "w") as log:
        proc = subprocess.run(cmd + overrides, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{method} failed (exit {proc.returncode}); see {output_dir}/bench_log.txt"
        )
    output_dir = os.path.join(REPO, output_dir)  # a relative --output-dir is below the repo
    metrics, _ = final_metrics(output_dir)
    iteration = run_max_iter(os.path.join(output_dir, "config.yaml"))
    result = {
        "method": method,
        "dataset": args.name,
        "config": config,
        "command": f"python {shown}",
        "iterations": iteration,
        "wall_seconds": round(wall, 1),
        "metrics": metrics,
        "training_scalars": training_scalars(output_dir),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "date": time.strftime("%Y-%m-%d"),
    }
    os.makedirs(os.path.join(args.results_dir, args.name), exist_ok=True)
    with open(os.path.join(args.results_dir, args.name, f"{method}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"[{method}] AP {metrics.get('AP', float('nan')):.2f} in {wall:.0f}s", flush=True)
    return result


def write_table(results_dir=RESULTS, output_dir=os.path.join("output", "bench"), table=None):
    """Rebuild the table (default ``benchmarks/ASSIGNERS.md``) from ``results_dir``; records are
    refreshed from their run folder when it exists, and rewritten with portable commands."""
    table = table or os.path.join(REPO, "benchmarks", "ASSIGNERS.md")
    rows = []
    for dataset in sorted(os.listdir(results_dir)) if os.path.isdir(results_dir) else []:
        if not os.path.isdir(os.path.join(results_dir, dataset)):
            continue  # other benchmarks' records (loss_equivalence_*.json) sit beside the folders
        for fname in sorted(os.listdir(os.path.join(results_dir, dataset))):
            path = os.path.join(results_dir, dataset, fname)
            if not fname.endswith(".json") or not os.path.isfile(path):
                continue  # e.g. dla_collapse/<tag>/: another benchmark's records
            with open(path) as f:
                r = json.load(f)
            if not {"method", "dataset", "metrics"} <= r.keys():
                continue  # another benchmark's record beside the runs (e.g. sad_A2_noac_draws)
            before = dict(r)
            out = os.path.join(REPO, output_dir, r["dataset"], r["method"])
            if os.path.exists(os.path.join(out, "metrics.json")):  # the run itself is the source
                r["metrics"], _ = final_metrics(out)
                r["training_scalars"] = training_scalars(out)
            r["command"] = portable_command(r["command"], r["dataset"])
            if r != before:
                with open(path, "w") as f:
                    json.dump(r, f, indent=1)
            rows.append(r)
    lines = [
        "# Label-assignment methods under one schedule (measured)",
        "",
        "Written by `benchmarks/train_assigners.py` from `benchmarks/results/*/*.json`; "
        "every row is",
        "one real training + COCO evaluation run on the CPU (2 cores), R-18-FPN (64 channels) "
        "trained",
        "from scratch with the quickstart recipe (batch 8). Commands are in the json files;",
        "`$BCCD` stands for the BCCD folder (annotations/{train,val}.json, images/).",
        "AP 0.00 = the model made no detection above its test score threshold (0.05).",
        "Wall times include waiting for other jobs on the shared 2-core machine (and, for",
        "shapes/dla_anchor_based, a pause while the main job was timed alone): not speeds.",
        "RetinaNet-head rows (`retinanet`, `noisy_anchor_retinanet`) use GroupNorm in the head "
        "towers",
        "(`retinanet_head_norm` in `configs/common/quickstart.py`); the `*_normfree_head` rows "
        "are the",
        "same configs before that change (commit 7905583, the COCO configs' norm-free head).",
        "A row's extra overrides (ablations: `bccd_noisy_ablation_*`, `bccd_dla_relu*` = DLA with "
        "the",
        "plain ReLU on the ltrb distances instead of the quickstart's straight-through one) end "
        "its command.",
        "",
        "| dataset | method | iters | AP | AP50 | AP75 | APs | APm | APl | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["metrics"]
        vals = " | ".join(f"{m[k]:.2f}" if k in m and m[k] == m[k] else "-" for k in METRICS)
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['iterations']} | {vals} "
            f"| {r['wall_seconds']:.0f} |"
        )
    lines += ["", "Commands:", ""] + [
        f"- {r['dataset']}/{r['method']}: `{r['command']}`" for r in rows
    ]
    with open(table, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", choices=("shapes", "coco_json"), default="shapes")
    p.add_argument("--name", default=None, help="results folder name (default: the dataset)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--json-train", default="")
    p.add_argument("--json-val", default="")
    p.add_argument("--image-root", default="")
    p.add_argument("--num-classes", type=int, default=0)
    p.add_argument("--max-iter", type=int, default=0, help="0: the configs' own schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table-only", action="store_true", help="only rebuild the table")
    p.add_argument(
        "--write-table",
        action="store_true",
        help="rebuild the tracked benchmarks/ASSIGNERS.md after the runs (default: records only)",
    )
    p.add_argument("--output-dir", default=os.path.join("output", "bench"), help="run folders")
    p.add_argument("--results-dir", default=RESULTS, help="result records (json)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="extra overrides for every run")
    args = p.parse_args()
    args.name = args.name or args.dataset
    if not args.table_only:
        methods = [m for m in args.methods.split(",") if m]
        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            p.error(f"unknown methods {unknown}; known: {sorted(METHODS)}")
        if args.dataset == "coco_json" and not (
            args.json_train and args.json_val and args.image_root and args.num_classes
        ):
            p.error(
                "--dataset coco_json needs --json-train, --json-val, --image-root and --num-classes"
            )
        for method in methods:
            run_one(args, method)
            if args.write_table:
                write_table(args.results_dir, args.output_dir)
    if args.write_table or args.table_only:
        write_table(args.results_dir, args.output_dir)


if __name__ == "__main__":
    main()
