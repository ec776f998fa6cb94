#!/usr/bin/env python
"""Why PADet's feature alignment (FAM) scores below no FAM at the quickstart budget: the training
statistics of the FAM runs and the AP of their control arms, in one record and one table.

The arms (``benchmarks/train_assigners.py`` methods, BCCD, 150 iterations, per seed):

- ``padet_apm``: no FAM (every level a plain 3x3 conv + ReLU);
- ``padet_apm_fam``: the FAM (disentangled offsets on D1-D4; D5 and D6 keep the plain conv, as in
  ``padet_apm``);
- ``padet_apm_fam_offset_gradmul0``: the FAM with its offset branch frozen at the zero
  initialisation: the same function as no FAM (zero offsets), the same parameters and random
  initialisation of every other layer as the FAM arm. Its gap to ``padet_apm`` is what the
  initialisation alone does; its gap to ``padet_apm_fam`` is what the learned alignment does.
- ``padet_apm_fam_offset_gradmul0p1`` (when run): the offset branch's gradient x 0.1;
- ``padet_apm`` started from the FAM arm's initial weights (``--write-fam-init`` writes them: the
  FAM arm built with the run's seed as the trainer builds it, without the zero offset branch):
  the no-FAM function and plain convolution with the FAM arm's random initialisation. With the
  frozen-offset arm it separates the initial draw from the deformable convolution's arithmetic::

      python benchmarks/padet_fam_diagnostic.py \\
          --write-fam-init output/famctrl/fam_arm_init_seed0.pth
      python benchmarks/train_assigners.py ... --name bccd_famdiag_init_from_fam --seed 0 \\
          --methods padet_apm train.init_checkpoint=output/famctrl/fam_arm_init_seed0.pth

Per FAM level the runs log (``FeatureAlignment``'s ``padet/fam<l>_offset_abs``, ``_offset_max``,
``_offset_grad``: mean and max |offset| in feature pixels, RMS of the loss gradient reaching the
offsets; Detectron2's writer stores the median of each 20-iteration window in ``metrics.json``).
This script reads them and the AP records::

    python benchmarks/padet_fam_diagnostic.py --runs output/bench \\
        --names bccd_famdiag bccd_famdiag_seed1 --baseline-names bccd bccd_seed1 \\
        --out benchmarks/results/padet_fam_diagnostic_bccd.json
"""

import argparse
import json
import os
from typing import Dict, List, Optional

from benchmark_records import save_record

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
FAM_ARMS = ("padet_apm_fam", "padet_apm_fam_offset_gradmul0", "padet_apm_fam_offset_gradmul0p1")
STATS = ("offset_abs", "offset_max", "offset_grad")


def read_series(metrics_json: str) -> Dict[str, Dict[int, float]]:
    """``padet/fam*`` scalars of a run's ``metrics.json``: name -> {iteration: value}."""
    series: Dict[str, Dict[int, float]] = {}
    with open(metrics_json) as f:
        for line in f:
            row = json.loads(line)
            if "iteration" not in row:
                continue
            for key, value in row.items():
                if key.startswith("padet/fam"):
                    series.setdefault(key[len("padet/") :], {})[int(row["iteration"])] = value
    return series


def by_level(series: Dict[str, Dict[int, float]]) -> Dict[str, Dict[str, Dict[int, float]]]:
    """{"fam0": {"offset_abs": {it: v}, ...}, ...}"""
    out: Dict[str, Dict[str, Dict[int, float]]] = {}
    for key, values in series.items():
        level, _, stat = key.partition("_")
        out.setdefault(level, {})[stat] = values
    return out


def ap_of(results_dir: str, name: str, method: str) -> Optional[float]:
    path = os.path.join(results_dir, name, f"{method}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["metrics"]["AP"]


def collect(runs: str, results_dir: str, names: List[str], baseline_names: List[str]) -> dict:
    record: dict = {"seeds": []}
    for seed, (name, base) in enumerate(zip(names, baseline_names)):
        entry = {"name": name, "ap": {"padet_apm": ap_of(results_dir, base, "padet_apm")}}
        entry["stats"] = {}
        for arm in FAM_ARMS:
            ap = ap_of(results_dir, name, arm)
            if ap is None:
                continue
            entry["ap"][arm] = ap
            metrics = os.path.join(runs, name, arm, "metrics.json")
            if os.path.exists(metrics):
                entry["stats"][arm] = by_level(read_series(metrics))
        record["seeds"].append(entry)
    return record


def table(record: dict) -> str:
    lines = []
    arms = ["padet_apm", *FAM_ARMS]
    present = [
        a for a in arms if any(a in s["ap"] and s["ap"][a] is not None for s in record["seeds"])
    ]
    lines.append(
        "| arm | " + " | ".join(f"seed {i} AP" for i in range(len(record["seeds"]))) + " | mean |"
    )
    lines.append("|---" * (len(record["seeds"]) + 2) + "|")
    for arm in present:
        aps = [s["ap"].get(arm) for s in record["seeds"]]
        vals = [a for a in aps if a is not None]
        mean = f"{sum(vals) / len(vals):.1f}" if vals else "-"
        cells = " | ".join(f"{a:.2f}" if a is not None else "-" for a in aps)
        lines.append(f"| {arm} | {cells} | {mean} |")
    lines.append("")
    lines.append(
        "| seed | arm | level | "
        + " | ".join(f"{stat} @ {it}" for stat in STATS for it in ("first", "last"))
        + " |"
    )
    lines.append("|---" * (3 + 2 * len(STATS)) + "|")
    for i, s in enumerate(record["seeds"]):
        for arm, levels in s["stats"].items():
            for level in sorted(levels):
                cells = []
                for stat in STATS:
                    values = levels[level].get(stat, {})
                    if values:
                        its = sorted(values)
                        cells += [
                            f"{values[its[0]]:.3g} ({its[0]})",
                            f"{values[its[-1]]:.3g} ({its[-1]})",
                        ]
                    else:
                        cells += ["-", "-"]
                lines.append(f"| {i} | {arm} | {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_fam_init(path: str, seed: int = 0, num_classes: int = 3) -> int:
    """The FAM arm's initial weights, built as the trainer builds them (``seed_all_rng(seed)``,
    then the model), less the offset branch: a checkpoint for the no-FAM arm. Returns how many
    tensors differ from the no-FAM arm's own initialisation at that seed."""
    import sys

    import torch

    sys.path.insert(0, REPO)
    from detectron2.config import LazyConfig, instantiate
    from detectron2.utils.env import seed_all_rng

    import semianchor  # noqa: F401

    def initial(config):
        cfg = LazyConfig.load(os.path.join(REPO, "projects/PADet/configs", config))
        cfg.model.num_classes = num_classes
        seed_all_rng(seed)
        return instantiate(cfg.model).state_dict()

    fam = initial("padet_apm_fam_offset_gradmul0_R18_coco_json.py")
    fam = {k: v for k, v in fam.items() if ".f_loc." not in k and ".g_shape." not in k}
    plain = initial("padet_apm_R18_coco_json.py")
    if set(fam) != set(plain):
        raise RuntimeError("the FAM arm's parameters (less F and G) are not the no-FAM arm's")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"model": fam}, path)
    return sum(not torch.equal(fam[k], plain[k]) for k in plain)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=os.path.join(REPO, "output", "bench"), help="run folders")
    p.add_argument("--results-dir", default=RESULTS)
    p.add_argument("--names", nargs="+", help="result/run folder of each seed")
    p.add_argument("--baseline-names", nargs="+", help="folder of each seed's padet_apm record")
    p.add_argument("--out")
    p.add_argument("--write-fam-init", metavar="PATH", help="write the FAM arm's initial weights")
    p.add_argument("--seed", type=int, default=0, help="with --write-fam-init")
    args = p.parse_args(argv)
    if args.write_fam_init:
        n = write_fam_init(args.write_fam_init, args.seed)
        print(f"{args.write_fam_init}: {n} tensors differ from the no-FAM arm's initialisation")
        return None
    if not args.names or not args.baseline_names:
        p.error("--names and --baseline-names are required (or --write-fam-init)")
    if len(args.names) != len(args.baseline_names):
        p.error("--names and --baseline-names need one folder per seed each")
    record = collect(args.runs, args.results_dir, args.names, args.baseline_names)
    record["command"] = "python benchmarks/padet_fam_diagnostic.py " + " ".join(
        f"--{k} {' '.join(v)}"
        for k, v in (("names", args.names), ("baseline-names", args.baseline_names))
    )
    print(table(record))
    return save_record(record, args.out)


if __name__ == "__main__":
    main()
