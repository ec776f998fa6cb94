#!/usr/bin/env python
"""Positives per ground-truth box under SAD's and ATSS's assignment, by class and size, on a
COCO-json dataset's training images: does SAD give large objects fewer positive locations or
anchors than ATSS?

No training: each method's quickstart config (``configs/quickstart/<method>_R18_coco_json.py``,
the runner's recipe) is built with its initial weights, the images go through the test-time
resize (the deterministic member of the training scales: shortest edge 256), and the model's
own assigner labels them as in a training step. The rules counted are static (IoU before
regression: ATSS's adaptive threshold, SAD's anchor labels and Eq. 4 locations); SAD's AC
labels are computed with zero regression deltas (the anchors as they are, which is what R1
regresses from). Per GT it counts:

- atss: positive anchors;
- sad: positive locations (whose GT g_i is this GT), the anchors that regress under R1
  (positive before regression and at a positive location) and under R2 (every anchor of the
  GT's positive locations), and the AC positives (y_hat = 1) at zero deltas;

and the GT's best IoU with any anchor (the anchor layout's fit) and, for SAD, the mean pyramid
level index (0 = P3) of its positive locations; it reports the mean per class (and per GT size
bin) and the share of GTs with no positive.

    python benchmarks/sad_large_object_positives.py \\
        --out benchmarks/results/sad_large_objects_bccd.json
"""

import argparse
import json
import os
import sys
from collections import defaultdict

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# semianchor first: it installs its narrow filters for the dependencies' start-up warnings
# before Detectron2's modules emit them, and registers its META_ARCHs and datasets
import semianchor  # noqa: E402,F401  # isort: skip
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import DatasetMapper  # noqa: E402
from detectron2.structures import Boxes, pairwise_iou  # noqa: E402

from semianchor.engine.classes import dataset_class_names  # noqa: E402

# a sibling script (benchmarks/ is sys.path[0]), not a third-party package: keep it last
from benchmark_records import save_record  # noqa: E402  # isort: skip

BCCD = os.path.join(REPO, "semianchor", "data", "builtin", "bccd")
CONFIGS = {
    "atss": "configs/quickstart/atss_R18_coco_json.py",
    "sad": "configs/quickstart/sad_R18_coco_json.py",
}
SIZE_BINS = ((0, 32), (32, 64), (64, 96), (96, 1e9))  # sqrt(area) at the resized scale


def build(method, json_file, image_root, num_classes):
    cfg = LazyConfig.load(os.path.join(REPO, CONFIGS[method]))
    cfg.dataloader.train.dataset.json_file = json_file
    cfg.dataloader.train.dataset.image_root = image_root
    cfg.model.num_classes = num_classes
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    return cfg, model


@torch.no_grad()
def count_positives(model, batch, method):
    """Per GT of the batch: (class, sqrt(area), {count name: value})."""
    images = model.preprocess_image(batch)
    gt_instances = [x["instances"].to(model.device) for x in batch]
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    preds = model.flatten_predictions(model.head(features))
    if method == "sad":
        preds["reg"] = torch.zeros_like(preds["reg"])  # the anchors as they are
    anchors = model.anchor_generator(features)
    inputs = model.build_assign_inputs(anchors, preds, gt_instances)
    result = model.assigner(inputs)
    K = model.num_classes
    sets = {}
    if method == "sad":
        loc = result["locations"]
        loc_pos = loc.positive_mask(K)
        sets["locations"] = torch.where(
            loc_pos, loc.matched_gt, torch.full_like(loc.matched_gt, -1)
        )
        static = result.extras["anchor_labels"]
        at_pos_loc = loc_pos[:, inputs.location_index()]
        r1 = at_pos_loc & (static >= 0) & (static < K)
        sets["anchors_R1"] = torch.where(
            r1, result.matched_gt, torch.full_like(result.matched_gt, -1)
        )
        loc_gt = loc.matched_gt[:, inputs.location_index()]
        sets["anchors_R2"] = torch.where(at_pos_loc, loc_gt, torch.full_like(loc_gt, -1))
        ac = result["anchor_cls"]
        sets["ac_positives"] = torch.where(
            ac.labels == 0, ac.matched_gt, torch.full_like(ac.matched_gt, -1)
        )
        per_level = [int(n) // c for n, c in zip(inputs.num_anchors_per_level, inputs.cell_anchors)]
        loc_level = torch.repeat_interleave(
            torch.arange(len(per_level)), torch.tensor(per_level)
        ).to(loc.matched_gt.device)
    else:
        pos = result.positive_mask(K)
        sets["anchors"] = torch.where(
            pos, result.matched_gt, torch.full_like(result.matched_gt, -1)
        )
    all_anchors = Boxes(inputs.anchors if inputs.anchors.dim() == 2 else inputs.anchors[0])
    rows = []
    for i, inst in enumerate(gt_instances):
        boxes = inst.gt_boxes.tensor
        if len(inst):
            best_iou = pairwise_iou(inst.gt_boxes, all_anchors).max(dim=1).values
        for g in range(len(inst)):
            w, h = (boxes[g, 2:] - boxes[g, :2]).tolist()
            counts = {name: int((m[i] == g).sum()) for name, m in sets.items()}
            counts["best_anchor_iou"] = float(best_iou[g])
            if method == "sad":
                levels = loc_level[sets["locations"][i] == g]
                counts["location_level"] = float(levels.float().mean()) if len(levels) else -1.0
            rows.append((int(inst.gt_classes[g]), (max(w, 0) * max(h, 0)) ** 0.5, counts))
    return rows


def summarize(rows, class_names):
    """Mean count per class and per size bin, and the share of GTs with no positive."""
    out = {}
    groups = defaultdict(list)
    for cls, side, counts in rows:
        groups[f"class {class_names[cls]}"].append((side, counts))
        for lo, hi in SIZE_BINS:
            if lo <= side < hi:
                groups[f"size {lo}-{hi if hi < 1e9 else 'inf'} px"].append((side, counts))
    for name, items in sorted(groups.items()):
        keys = items[0][1].keys()
        out[name] = {
            "gts": len(items),
            "mean_side_px": round(sum(s for s, _ in items) / len(items), 1),
            **{k: round(sum(c[k] for _, c in items) / len(items), 3) for k in keys},
            **{
                f"{k}_zero_share": round(sum(c[k] == 0 for _, c in items) / len(items), 3)
                for k in keys
                if k not in ("best_anchor_iou", "location_level")
            },
        }
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=os.path.join(BCCD, "annotations", "train.json"))
    p.add_argument("--image-root", default=os.path.join(BCCD, "images"))
    p.add_argument("--methods", default="sad,atss")
    p.add_argument("--images", type=int, default=0, help="first N images (0: all)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out")
    args = p.parse_args(argv)
    class_names = dataset_class_names({"json_file": args.json})
    result = {"methods": {}}
    for method in args.methods.split(","):
        cfg, model = build(method, args.json, args.image_root, len(class_names))
        augs = [instantiate(a) for a in cfg.dataloader.test.mapper.get("augmentations", [])]
        mapper = DatasetMapper(
            is_train=True, augmentations=augs, image_format=cfg.dataloader.train.mapper.image_format
        )
        records = instantiate(cfg.dataloader.train.dataset)
        records = records[: args.images] if args.images else records
        rows = []
        for start in range(0, len(records), args.batch):
            batch = [mapper(dict(r)) for r in records[start : start + args.batch]]
            rows += count_positives(model, batch, method)
        result["methods"][method] = summarize(rows, class_names)
        result["images"] = len(records)
        print(method, json.dumps(result["methods"][method], indent=1))
    shown = " ".join(a.replace(REPO + os.sep, "") for a in sys.argv[1:])
    result["command"] = f"python benchmarks/sad_large_object_positives.py {shown}".strip()
    result["configs"] = {m: CONFIGS[m] for m in args.methods.split(",")}
    return save_record(result, args.out)


if __name__ == "__main__":
    main()
