#!/usr/bin/env python
"""Draw which anchors a detector's label assigner makes positive, image by image.

    python tools/visualize_assignment.py --config-file configs/quickstart/atss_R18_bccd.py \
        --output vis_assign --num-images 4 [--weights model.pth] [--show-anchor-boxes] \
        [key=value ...]

For each training image (test-time resize, no flip) it runs the model's backbone and head (so
prediction-aware assigners such as DLA or cleanliness see real predictions; random ones without
--weights) and its public assignment step (``model.assign``, the step training takes before its
losses), then writes a PNG drawn like the papers' figures
(``semianchor.visualization.draw_assignment``, the training report's picture): GT boxes, the
centres of their positive anchors as dots in the GT's colour, a title naming the method and a
legend with the counts; small images are upscaled. Detectron2's own RetinaNet and FCOS (our
baselines) are drawn from their ``label_anchors``. ``--show-anchor-boxes`` also draws the positive
anchors' boxes. It prints the positives per GT and per level.

PADet (a staged assigner) is drawn as two panels, the positives of the initial anchors (the
APM's matching) beside those of the promoted anchors (the detection module's). SAD gets a
second panel: its positive locations and, for one location per GT, the location's anchors
coloured by their anchor-classification target mu_hat, with the positive:negative ratios of
anchors vs locations and the mean mu_hat in the legend.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# semianchor first: it installs its narrow filters for the dependencies' start-up warnings
# before Detectron2's modules emit them, and registers its META_ARCHs and datasets
import semianchor  # noqa: E402,F401  # isort: skip
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import DatasetMapper  # noqa: E402

from semianchor.engine.assignment import compute_assignment  # noqa: E402
from semianchor.engine.classes import dataset_class_names, resolve_num_classes  # noqa: E402
from semianchor.visualization import draw_assignment, input_image_rgb  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="a LazyConfig .py")
    parser.add_argument("--output", required=True, help="folder for the PNGs")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--weights", default="", help="checkpoint (default: an untrained model)")
    parser.add_argument(
        "--show-anchor-boxes", action="store_true", help="also draw the positive anchors' boxes"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="key=value config overrides")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config_file):
        parser.error(f"config file not found: {args.config_file}")
    if args.num_images < 1:
        parser.error(f"--num-images must be >= 1, got {args.num_images}")

    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    resolve_num_classes(cfg)  # a COCO-json config's class count comes from its json
    model = instantiate(cfg.model).eval()
    if args.weights:
        DetectionCheckpointer(model).load(args.weights)
    dataset_cfg = cfg.dataloader.train.dataset
    names = dataset_cfg.get("names", None) or dataset_cfg.get("name", None)
    name = names if isinstance(names, str) else names[0]
    image_format = cfg.dataloader.train.mapper.image_format
    # the test-time resize (anchors live in the resized image), no flip; is_train keeps the GTs
    augmentations = [instantiate(a) for a in cfg.dataloader.test.mapper.get("augmentations", [])]
    mapper = DatasetMapper(is_train=True, augmentations=augmentations, image_format=image_format)
    os.makedirs(args.output, exist_ok=True)
    written = []
    records = instantiate(dataset_cfg)  # registers a COCO json dataset: class names after this
    class_names = dataset_class_names(name) or []
    for d in records[: args.num_images]:
        inputs = mapper(dict(d))
        (assignment,) = compute_assignment(model, [inputs])
        stem = os.path.splitext(os.path.basename(d["file_name"]))[0]
        out = draw_assignment(
            input_image_rgb(inputs, image_format),
            assignment,
            class_names,
            os.path.join(args.output, f"{stem}.png"),
            title=(
                f"{assignment.method}\npositive anchors of {name}: "
                f"{os.path.basename(d['file_name'])}"
                + ("" if args.weights else " (untrained model)")
            ),
            show_anchor_boxes=args.show_anchor_boxes,
        )
        written.append(out)
        m = len(assignment.gt_boxes)
        per_gt = np.bincount(assignment.matched_gt.astype(np.int64), minlength=m)[:m].tolist()
        per_level = np.bincount(
            assignment.anchor_levels.astype(np.int64), minlength=len(assignment.level_names)
        ).tolist()
        extra = "".join(
            f"; {v.stage} anchors: {len(v.anchor_boxes)} positives"
            for v in assignment.earlier_stages
        )
        if assignment.locations is not None:
            st = assignment.locations.stats
            extra += "; " + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in st.items()
            )
        print(
            f"{d['file_name']}: {m} GTs, positives per GT {per_gt}, per level {per_level}{extra}"
            f" -> {out}"
        )
    return written


if __name__ == "__main__":
    main()
