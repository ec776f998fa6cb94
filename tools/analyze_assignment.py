#!/usr/bin/env python
"""What each label assigner makes of a dataset: positives per GT by size, level and class, GTs
left without a positive, pos:neg:ignored ratios, IoUs and soft targets, as tables and plots.

    python tools/analyze_assignment.py --config-file configs/quickstart/atss_R18_bccd.py \
        --assigners config,maxiou,maxiou_strict,ssd,topn --dataset bccd_val \
        --output docs/assignment_analysis/bccd [--weights model.pth] [--max-images N] \
        [--config-file another_config.py ...] [key=value ...]

Each image is mapped once at the scale training sees (the first config's training resize at the
middle of its sizes, no random augmentation) and run through every model's public assignment
step, the code path training takes (``model.assign``; Detectron2's ``label_anchors`` for the
RetinaNet / FCOS baselines; the proposal generator's ``assign`` for the Noisy-Anchor RPN).

- ``--assigners a,b,...`` swaps named assigners into the first config's ``model.assigner``
  ("config": its own; presets: atss, maxiou (RetinaNet), maxiou_strict (no best-anchor rule),
  ssd, topn (Noisy Anchors' top-N IoU, static), cleanliness); more ``--config-file`` add other
  detectors with their own assigners (``--weights`` then once per config, in order).
- Static rules (anchors and GTs only) run on the data alone; dynamic rules (DLA, cleanliness,
  SAD's IoU after regression, PADet's promotion and theta) need ``--weights`` and are refused
  without them.
- The dataset: ``--dataset NAME`` (registered), ``--json FILE --image-root DIR`` (any COCO json;
  a degenerate box is an error at load), or by default the config's training set.

Writes README.md (tables and plots), CSVs, PNGs and example images of GTs without a positive
under ``--output`` and prints a one-screen summary.
"""

import time

_START = time.perf_counter()  # before the heavy imports: the wall time reported includes them

import argparse  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# semianchor first: it installs its narrow filters for the dependencies' start-up warnings
# before Detectron2's modules emit them, and registers its META_ARCHs and datasets
import semianchor  # noqa: E402,F401  # isort: skip
from detectron2.config import LazyConfig, instantiate  # noqa: E402

from semianchor.analysis import (  # noqa: E402
    analyze,
    build_models,
    summary_lines,
    training_scale_mapper,
    write_analysis,
    write_examples,
)
from semianchor.analysis.run import projection  # noqa: E402
from semianchor.data import get_checked_dataset_dicts, get_coco_json_dicts  # noqa: E402
from semianchor.engine.classes import dataset_class_names, resolve_num_classes  # noqa: E402


def argument_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", action="append", required=True, help="LazyConfig .py")
    parser.add_argument("--assigners", default="", help="comma-separated presets or 'config'")
    parser.add_argument("--weights", action="append", default=[], help="checkpoint (per config)")
    parser.add_argument(
        "--names", default="", help="comma-separated names of the assigners, in order (tables)"
    )
    parser.add_argument("--dataset", default="", help="a registered dataset name")
    parser.add_argument("--json", default="", help="a COCO instances json")
    parser.add_argument("--image-root", default="", help="the json's image folder")
    parser.add_argument("--max-images", type=int, default=0, help="0: all")
    parser.add_argument("--output", required=True, help="folder for the report")
    parser.add_argument("--examples", type=int, default=2, help="example images per assigner")
    parser.add_argument(
        "--iteration",
        type=int,
        default=None,
        help="training iteration for schedules (DLA's alpha); default: the config's "
        "train.max_iter with --weights, else 0",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the per-image tensors are small, and more threads "
        "cost more than they save)",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="key=value overrides (all configs)")
    return parser


def _records(args, cfg):
    """(records, dataset name, class names)."""
    if args.json:
        if not args.image_root:
            raise ValueError("--json needs --image-root (the folder its file_name entries are in)")
        name = f"analyze_assignment:{os.path.abspath(args.json)}"  # one name per json file
        records = get_coco_json_dicts(name, args.json, args.image_root, filter_empty=False)
    elif args.dataset:
        name = args.dataset
        records = get_checked_dataset_dicts(name, filter_empty=False)
    else:
        dataset_cfg = cfg.dataloader.train.dataset
        if dataset_cfg.get("json_file", None) == "":
            raise ValueError(
                "the config's training set is a COCO json given on the command line: "
                "pass --json FILE --image-root DIR (or --dataset NAME)"
            )
        records = instantiate(dataset_cfg)
        names = dataset_cfg.get("names", None) or dataset_cfg.get("name", None)
        name = names if isinstance(names, str) else names[0]
    classes = dataset_class_names(name) or []
    return records, name, classes


def main(argv=None):
    parser = argument_parser()
    args = parser.parse_args(argv)
    for path in args.config_file:
        if not os.path.isfile(path):
            parser.error(f"config file not found: {path}")
    if args.weights and len(args.weights) != len(args.config_file):
        parser.error(
            f"--weights given {len(args.weights)} times for {len(args.config_file)} configs: "
            "give one per --config-file, in order"
        )
    if args.max_images < 0:
        parser.error(f"--max-images must be >= 0, got {args.max_images}")
    assigners = [a.strip() for a in args.assigners.split(",") if a.strip()]
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    start = _START if argv is None else time.perf_counter()  # in-process calls: this call

    cfgs = [LazyConfig.apply_overrides(LazyConfig.load(p), args.opts) for p in args.config_file]
    first = cfgs[0]
    records, dataset, class_names = _records(args, first)
    if args.max_images:
        records = records[: args.max_images]
    if not records:
        raise ValueError(f"dataset {dataset} has no images")
    num_classes = len(class_names) if class_names else None
    if num_classes is None:
        resolve_num_classes(first)
        num_classes = first.model.num_classes
    configs = [
        (
            os.path.splitext(os.path.basename(p))[0],
            c,
            args.weights[k] if args.weights else None,
        )
        for k, (p, c) in enumerate(zip(args.config_file, cfgs))
    ]
    models = build_models(configs, assigners, num_classes=num_classes, device=args.device)
    if args.names:
        names = [n.strip() for n in args.names.split(",")]
        if len(names) != len(models) or len(set(names)) != len(names):
            raise ValueError(
                f"--names gives {names} for {len(models)} assigners "
                f"({', '.join(m.name for m in models)}): give as many distinct names"
            )
        for m, name in zip(models, names):
            m.name = name
    iteration = args.iteration
    if iteration is None:
        iteration = int(first.train.get("max_iter", 0)) if args.weights else 0
    mapper, notes = training_scale_mapper(first.dataloader.train.mapper)
    setup = time.perf_counter() - start
    stats, counters = analyze(
        models,
        records,
        mapper,
        num_classes,
        iteration=iteration,
        max_examples=args.examples,
        progress=not args.no_progress,
    )

    # example images of GTs without a positive, drawn as the assignment picture
    examples = write_examples(
        models, stats, records, mapper, args.output, class_names, iteration=iteration
    )

    wall = time.perf_counter() - start
    n = counters["images"]
    command = "python tools/analyze_assignment.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    timing = [
        f"- wall time {wall:.1f} s before writing this report (from the start of the process: "
        f"imports, models, dataset "
        f"{setup:.1f} s), reading and resizing the images "
        f"{counters['load_seconds']:.1f} s, then per assigner:"
    ]
    for m in models:
        alone = (m.seconds + counters["load_seconds"]) / max(n, 1)  # run alone: all the loading
        timing.append(
            f"  - {m.name}: {m.seconds:.1f} s ({1000 * m.seconds / max(n, 1):.0f} ms per image); "
            f"alone with the reading and resizing {1000 * alone:.0f} ms per image, so 5,000 "
            f"images in about {projection(alone, 5000)}"
        )
    header = [
        f"# Label assignment on {dataset}",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- {n} images, {counters['gts']} GT boxes in the annotations, {counters['gts_mapped']} "
        f"after the mapper ({counters['crowd']} crowd annotations and "
        f"{counters['gts'] - counters['gts_mapped'] - counters['crowd']} boxes empty after "
        "clipping to the image are not GTs in training either)",
        "- images at the scale training sees: " + "; ".join(notes or ["no resize"]),
        "- sizes are sqrt(area) in the input image the assigner sees (after that resize)",
    ]
    for m in models:
        kind = "static" if m.static else "dynamic"
        weights = "with weights" if not m.static or args.weights else "no weights needed"
        header.append(f"- **{m.name}** ({kind}, {weights}): {m.why}")
    header += timing
    written = write_analysis(stats, args.output, header, class_names, examples)

    lines = [
        "",
        "=" * 100,
        f"Label assignment on {dataset}: {n} images, {counters['gts_mapped']} GTs "
        f"({wall:.1f} s)",
    ]
    lines += summary_lines(stats)
    lines += [f"Report: {written['README.md']} (tables, CSVs, plots)", "=" * 100]
    print("\n".join(lines), flush=True)
    return {"stats": stats, "counters": counters, "written": written, "wall": wall}


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:  # bad input: the message, not a traceback
        sys.exit(f"analyze_assignment: {e}")
