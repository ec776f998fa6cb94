#!/usr/bin/env python
"""PADet's promotion statistics (the paper's Figs. 1-2 argument) of a model, untrained vs
trained: per image, the detection module's positives on the initial anchors vs on the promoted
anchors (the anchors moved by the APM), the positive:negative ratio before vs after the
theta rule (negatives the APM scores below theta are ignored), the share of negatives theta
ignores, and per module (det, apm) the negatives per positive that actually enter the
classification loss (after hard-negative mining with ``model.loss_mode="ohem"``).

It runs the model's own training path (``PADet.log_assignment``'s scalars ``padet/*``) without
gradients over the first ``--images`` training images at the test-time resize (no random
augmentation), in batches of ``--batch``, once with the initial weights (``--seed``) and once
with ``--weights``, and writes both to ``--out``:

    python benchmarks/padet_promotion_stats.py \\
        --config-file projects/PADet/configs/padet_apm_fam_R18_coco_json.py \\
        --weights output/bench/bccd/padet_apm_fam/model_final.pth \\
        --out benchmarks/results/padet_promotion_bccd.json \\
        dataloader.train.dataset.json_file=$BCCD/annotations/train.json \\
        dataloader.train.dataset.image_root=$BCCD/images model.num_classes=3
"""

import argparse
import json
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# semianchor first: it installs its narrow filters for the dependencies' start-up warnings
# before Detectron2's modules emit them, and registers its META_ARCHs and datasets
import semianchor  # noqa: E402,F401  # isort: skip
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import DatasetMapper  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

# a sibling script (benchmarks/ is sys.path[0]), not a third-party package: keep it last
from train_assigners import portable_command  # noqa: E402  # isort: skip

KEYS = (
    "padet/num_pos_initial",
    "padet/num_pos_promoted",
    "padet/neg_per_pos_initial",
    "padet/neg_per_pos_promoted",
    "padet/theta_ignored",
    "padet/theta_ignored_share",
    "padet/trained_pos_det",
    "padet/trained_neg_per_pos_det",
    "padet/trained_pos_apm",
    "padet/trained_neg_per_pos_apm",
)


def statistics(model, batches):
    """Mean over the batches of each ``padet/*`` scalar the training path logs (a scalar the
    model does not log, e.g. the APM's without an APM, is left out)."""
    sums, counts = {k: 0.0 for k in KEYS}, {k: 0 for k in KEYS}
    # the training path (assignment + logging) as in training, BatchNorm on batch statistics;
    # no optimizer step, no gradients
    model.train()
    with torch.no_grad():
        for batch in batches:
            with EventStorage(0) as storage:
                model(batch)
                for k in KEYS:
                    if k in storage.histories():
                        sums[k] += storage.histories()[k].latest()
                        counts[k] += 1
    return {k.split("/")[1]: round(sums[k] / counts[k], 3) for k in KEYS if counts[k]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args()
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    if cfg.model.get("num_classes", None) is None:
        raise SystemExit("give model.num_classes=K")
    augs = [instantiate(a) for a in cfg.dataloader.test.mapper.get("augmentations", [])]
    mapper = DatasetMapper(
        is_train=True, augmentations=augs, image_format=cfg.dataloader.train.mapper.image_format
    )
    records = instantiate(cfg.dataloader.train.dataset)[: args.images]
    mapped = [mapper(dict(r)) for r in records]
    batches = [mapped[i : i + args.batch] for i in range(0, len(mapped), args.batch)]
    torch.manual_seed(args.seed)
    model = instantiate(cfg.model)
    result = {"untrained": statistics(model, batches)}
    DetectionCheckpointer(model).load(args.weights)
    result["trained"] = statistics(model, batches)
    result.update(
        images=len(mapped),
        config=os.path.relpath(os.path.abspath(args.config_file), REPO),
        weights=os.path.relpath(os.path.abspath(args.weights), REPO),
        command=portable_command(
            "python benchmarks/padet_promotion_stats.py " + " ".join(sys.argv[1:]), "bccd"
        ),
    )
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
