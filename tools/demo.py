#!/usr/bin/env python
"""Run a trained semianchor detector on images and write the drawn detections as PNGs.

    python tools/demo.py --config-file configs/yacs/ATSS_R18_shapes.yaml \
        --input path/to/image_or_folder --output demo_out --weights model_final.pth

A yacs ``.yaml`` config is served with Detectron2's ``DefaultPredictor``; a LazyConfig (``.py``,
or the ``config.yaml`` a ``tools/lazyconfig_train_net.py`` run saved) with
``semianchor.engine.LazyPredictor`` (same behaviour). Trailing ``KEY VALUE`` (yacs) or
``key=value`` (LazyConfig) arguments override the config.
"""

import argparse
import glob
import json
import logging
import os
import sys

import cv2
from PIL import Image
from PIL.PngImagePlugin import PngInfo

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# semianchor first: it installs its narrow filters for the dependencies' start-up warnings
# before Detectron2's modules emit them, and registers its META_ARCHs and datasets
import semianchor  # noqa: E402,F401  # isort: skip
from detectron2.utils.logger import setup_logger  # noqa: E402
from detectron2.utils.visualizer import ColorMode, Visualizer  # noqa: E402

from semianchor.engine import build_predictor  # noqa: E402

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def list_images(path):
    if os.path.isdir(path):
        files = sorted(
            f for f in glob.glob(os.path.join(path, "*")) if f.lower().endswith(IMAGE_EXTS)
        )
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) in folder {path}")
        return files
    if not os.path.exists(path):
        raise FileNotFoundError(f"input not found: {path}")
    return [path]


def detection_records(instances, metadata):
    """One dict per detection: class name (index when the metadata has no names), score, box."""
    names = metadata.get("thing_classes", None)
    return [
        {
            "class": names[c] if names is not None and c < len(names) else int(c),
            "score": round(float(s), 4),
            "box": [round(float(v), 1) for v in b],
        }
        for c, s, b in zip(
            instances.pred_classes.tolist(), instances.scores, instances.pred_boxes.tensor
        )
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--input", required=True, help="an image or a folder of images")
    parser.add_argument("--output", required=True, help="folder for the drawn PNGs")
    parser.add_argument(
        "--weights", default="", help="trained checkpoint (required unless the config names one)"
    )
    parser.add_argument("--confidence-threshold", type=float, default=0.3)
    parser.add_argument("--device", default="", help="cpu / cuda (default: cuda if available)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = parser.parse_args(argv)
    logger = setup_logger(name="semianchor.demo")

    inputs = list_images(args.input)  # a wrong path fails before the model is built
    predictor, metadata = build_predictor(
        args.config_file,
        args.weights,
        args.opts,
        args.device,
        score_thresh=args.confidence_threshold,
    )
    os.makedirs(args.output, exist_ok=True)
    written = []
    for path in inputs:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read image {path}")
        instances = predictor(image)["instances"].to("cpu")
        instances = instances[instances.scores >= args.confidence_threshold]
        vis = Visualizer(image[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE)
        drawn = vis.draw_instance_predictions(instances).get_image()
        out = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + ".png")
        # the detections also as text in the PNG (key "detections"), with the class names drawn
        info = PngInfo()
        info.add_text("detections", json.dumps(detection_records(instances, metadata)))
        Image.fromarray(drawn).save(out, pnginfo=info)
        written.append(out)
        logger.info(f"{path}: {len(instances)} detections >= {args.confidence_threshold} -> {out}")
    return written


if __name__ == "__main__":
    logging.basicConfig()
    try:
        main()
    except (ValueError, FileNotFoundError) as e:  # bad input: the message, not a traceback
        sys.exit(f"demo.py: error: {e}")
