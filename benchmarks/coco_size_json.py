#!/usr/bin/env python
"""Write a COCO-size instances json for timing ``tools/analyze_assignment.py`` on 5,000 images.

    python benchmarks/coco_size_json.py --output /tmp/coco_size/instances.json [--images 5000]

COCO val2017's shape without downloading it: 5,000 image entries of 640x480 (the shipped BCCD
photos, reused in turn, so the images really are read and resized), 80 categories and 7.3 boxes
per image on average (Poisson), sizes drawn so that about 41% are small (area < 32^2), 34%
medium and 25% large, as COCO's annotations are. The json's image root is the BCCD image folder.
"""

import argparse
import json
import os

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BCCD_IMAGES = os.path.join(REPO, "semianchor", "data", "builtin", "bccd", "images")
# COCO's share of small / medium / large boxes and the sqrt(area) range drawn in each
SIZE_BINS = ((0.41, 4.0, 32.0), (0.34, 32.0, 96.0), (0.25, 96.0, 400.0))


def coco_size_json(num_images: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    files = sorted(f for f in os.listdir(BCCD_IMAGES) if f.endswith(".jpg"))
    width, height = 640, 480
    images, annotations = [], []
    shares = np.array([b[0] for b in SIZE_BINS])
    for i in range(num_images):
        images.append(
            {"id": i + 1, "file_name": files[i % len(files)], "width": width, "height": height}
        )
        for _ in range(rng.poisson(7.3)):
            lo, hi = SIZE_BINS[rng.choice(len(SIZE_BINS), p=shares / shares.sum())][1:]
            side = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            ratio = float(np.exp(rng.uniform(np.log(0.33), np.log(3.0))))  # h / w
            w = min(side / np.sqrt(ratio), width - 1)
            h = min(side * np.sqrt(ratio), height - 1)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": int(rng.integers(1, 81)),
                    "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k, "name": f"class_{k}"} for k in range(1, 81)]
    return {"images": images, "annotations": annotations, "categories": categories}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", required=True, help="the json to write")
    parser.add_argument("--images", type=int, default=5000)
    args = parser.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    data = coco_size_json(args.images)
    with open(args.output, "w") as f:
        json.dump(data, f)
    print(
        f"{args.output}: {len(data['images'])} images, {len(data['annotations'])} boxes; "
        f"image root {BCCD_IMAGES}"
    )


if __name__ == "__main__":
    main()
