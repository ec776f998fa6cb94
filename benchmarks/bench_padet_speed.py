#!/usr/bin/env python
"""PADet's speed: images/s at 384 and 512 for VGG-16 PADet vs the same model without the FAM,
in one run on one machine.

Models (randomly initialised; speed depends on the weights only through how many candidates pass
the score gate, so the post-processing is timed at the configs' own gate): VGG-16 PADet at 384
and 512 (``configs/COCO-Detection/padet_VGG16_{384,512}.py``) with its feature alignment module
(FAM, "disentangled" deformable 3x3 on D1-D4) and the same model with ``fam_mode="none"`` (plain
3x3 convolutions, the Table 1 "no alignment" row). Time = ``model([image])`` in eval mode
of an image the test mapper resized to the square input (preprocessing, backbone, APM +
detection head, decoding, the APM gate, soft-NMS), median of ``--repeats`` after ``--warmup``
runs, batch 1, ``--threads`` intra-op threads; images/s = 1000 / median ms.

    python benchmarks/bench_padet_speed.py --repeats 7 --out benchmarks/results/padet_speed.json
"""

import argparse
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import bench_sad_inference as speed  # noqa: E402  # isort: skip  (benchmarks/ script)
from detectron2.config import LazyConfig, instantiate  # noqa: E402

CONFIGS = {
    384: "configs/COCO-Detection/padet_VGG16_384.py",
    512: "configs/COCO-Detection/padet_VGG16_512.py",
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="*", default=sorted(CONFIGS))
    p.add_argument("--out", help="json file for the results")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes:
        for fam in ("disentangled", "none"):
            cfg = LazyConfig.load(os.path.join(REPO, CONFIGS[size]))
            cfg.model.head.fam_mode = fam
            torch.manual_seed(0)
            model = instantiate(cfg.model).eval()
            image = torch.randint(0, 255, (3, size, size), dtype=torch.uint8).float()
            # the test mapper resizes to the square input; detections go back to a 640x480 photo
            median, times, dets = speed.time_model(
                model, image, args.warmup, args.repeats, height=480, width=640
            )
            rows.append(
                dict(
                    input=size,
                    fam_mode=fam,
                    median_ms=round(median, 1),
                    images_per_s=round(1000.0 / median, 3),
                    detections=dets,
                    times_ms=[round(t, 1) for t in times],
                )
            )
            print(
                f"VGG-16 PADet {size}  FAM {fam:12s} median {median:8.1f} ms  "
                f"{1000.0 / median:6.2f} images/s  ({dets} detections)",
                flush=True,
            )
    command = "python " + " ".join(["benchmarks/bench_padet_speed.py"] + sys.argv[1:])
    speed.write_record(args.out, command, args.threads, rows)


if __name__ == "__main__":
    main()
