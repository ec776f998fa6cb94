#!/usr/bin/env python
"""Benchmark of the label-assignment kernels: compiled op vs pure-PyTorch reference vs a dense
O(R*M) PyTorch implementation (the official ATSS code's approach), on an 800x1333 image with FPN
P3-P7 anchors (A = 1 or 9 per location), M GTs, batch N.

Every (op, implementation, case) runs in a fresh subprocess so that its peak memory can be read
from the kernel's accounting: peak extra memory = ru_maxrss after the first (warm-up) call minus
ru_maxrss before it, with the inputs already built. Time = median of the timed calls after it.
Cases whose dense intermediates would not fit the budget are skipped with their computed size.

    python benchmarks/bench_kernels.py --json benchmarks/bench_kernels.json   # full table (~20 min)
    python benchmarks/bench_kernels.py --quick    # a few small cases
    python benchmarks/bench_kernels.py --ops max_iou,topn   # the IoU-matching ops
    python benchmarks/bench_kernels.py --ops soft_nms    # soft-NMS: op vs reference only

``max_iou`` / ``topn``: ``max_iou_match`` / ``topn_iou_match`` (topn = 50) kernels vs
the dense path (detectron2 ``pairwise_iou`` + ``Matcher`` as ``MaxIoUAssigner``; the dense
``topn_iou_assignment`` code, ``topn_iou_match_reference``), one image, A = 9 and 25, M up to 2000.
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo

STRIDES = (8, 16, 32, 64, 128)
IMAGE = (800, 1333)


# --------------------------------------------------------------------------------------------
# timing
def median_time(fn, first: float, repeats: int) -> float:
    """Median seconds of ``repeats`` further calls of ``fn``; a first call (``first`` seconds) of
    2 s or more is timed alone."""
    if first >= 2.0:
        return first
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------------------------
# inputs
def make_anchors(A):
    import torch

    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

    if A == 1:  # ATSS: one square anchor of size 8 * stride per location
        sizes, ratios = [[8 * s] for s in STRIDES], [[1.0]]
    elif A == 9:  # RetinaNet: 3 scales x 3 aspect ratios
        sizes = [[x * 2 ** (i / 3) for i in range(3)] for x in (32, 64, 128, 256, 512)]
        ratios = [[0.5, 1.0, 2.0]]
    elif A == 25:  # a dense stress case (SAD's layout): 5 scales x 5 aspect ratios
        sizes = [[x * 2 ** (i / 5) for i in range(5)] for x in (32, 64, 128, 256, 512)]
        ratios = [[0.25, 0.5, 1.0, 2.0, 4.0]]
    else:
        raise ValueError(f"no anchor set with A = {A}")
    gen = DefaultAnchorGenerator(
        sizes=sizes, aspect_ratios=ratios, strides=list(STRIDES), offset=0.0
    )
    feats = [torch.zeros(1, 1, math.ceil(IMAGE[0] / s), math.ceil(IMAGE[1] / s)) for s in STRIDES]
    per_level = gen(feats)
    return torch.cat([b.tensor for b in per_level]), [len(b) for b in per_level]


def make_gts(N, M, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    H, W = IMAGE
    cxy = torch.rand(N, M, 2, generator=g) * torch.tensor([W, H])
    wh = torch.exp(torch.rand(N, M, 2, generator=g) * math.log(400 / 8)) * 8  # 8..400 px
    return torch.cat([cxy - wh / 2, cxy + wh / 2], -1), torch.full((N,), M, dtype=torch.long)


# --------------------------------------------------------------------------------------------
# the dense O(R*M) implementation (what public ATSS implementations do)
def atss_dense(anchors, num_anchors_per_level, gt_boxes, gt_counts, topk=9, A=1):
    """Per image, as sfzhang15/ATSS prepare_targets (IoU without +1): dense R x M IoU and
    distance matrices, topk per level, mean + std, centre test, conflicts through a -inf-filled
    R x M matrix. Same rules as semianchor's ops up to the tie order of torch.topk."""
    import torch
    from torchvision.ops import box_iou

    out = []
    a_cx = (anchors[:, 2] + anchors[:, 0]) / 2.0
    a_cy = (anchors[:, 3] + anchors[:, 1]) / 2.0
    anchor_points = torch.stack((a_cx, a_cy), dim=1)
    R = len(anchors)
    for n in range(gt_boxes.shape[0]):
        gt = gt_boxes[n, : int(gt_counts[n])]
        num_gt = len(gt)
        ious = box_iou(anchors, gt)
        gt_points = torch.stack(((gt[:, 2] + gt[:, 0]) / 2.0, (gt[:, 3] + gt[:, 1]) / 2.0), dim=1)
        distances = (anchor_points[:, None, :] - gt_points[None, :, :]).pow(2).sum(-1).sqrt()
        cands, start = [], 0
        for n_l in num_anchors_per_level:
            k = min(topk * A, n_l)
            _, idx = distances[start : start + n_l].topk(k, dim=0, largest=False)
            cands.append(idx + start)
            start += n_l
        cand = torch.cat(cands, dim=0)  # (C, M)
        cand_ious = ious[cand, torch.arange(num_gt)]
        thr = cand_ious.mean(0) + cand_ious.std(0)
        is_pos = cand_ious >= thr[None, :]
        cx, cy = a_cx[cand], a_cy[cand]
        inside = (
            torch.stack([cx - gt[:, 0], cy - gt[:, 1], gt[:, 2] - cx, gt[:, 3] - cy], 1).min(1)[0]
            > 0.01
        )
        is_pos &= inside
        ious_inf = torch.full((num_gt, R), -float("inf"))
        gi = torch.arange(num_gt).expand_as(cand)
        ious_inf[gi[is_pos], cand[is_pos]] = cand_ious[is_pos]
        values, index = ious_inf.max(dim=0)
        out.append(torch.where(values > -float("inf"), index, torch.full_like(index, -1)))
    return torch.stack(out)


def max_iou_dense(anchors, gt_boxes, gt_counts):
    """Today's MaxIoUAssigner body: per image detectron2's dense (M, R) pairwise_iou + Matcher
    (RetinaNet's thresholds, low-quality matches on) and the per-anchor max IoU."""
    from detectron2.modeling.matcher import Matcher
    from detectron2.structures import Boxes, pairwise_iou

    matcher = Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)
    boxes = Boxes(anchors)
    out = []
    for n in range(gt_boxes.shape[0]):
        iou = pairwise_iou(Boxes(gt_boxes[n, : int(gt_counts[n])]), boxes)
        idx, labels = matcher(iou)
        out.append((idx, labels, iou.max(dim=0).values))
    return out


# --------------------------------------------------------------------------------------------
# one measurement (child process)
def run_case(op, impl, A, M, N, repeats):
    import torch

    if op == "soft_nms":  # A: number of classes, M: number of boxes (N unused)
        return run_soft_nms_case(impl, A, M, repeats)

    torch.manual_seed(0)
    from semianchor import layers

    anchors, levels = make_anchors(A)
    gt, counts = make_gts(N, M)
    R = anchors.shape[0]
    if op == "max_iou":
        fn = {
            "kernel": lambda: layers.max_iou_match(anchors, gt, counts, levels),
            "dense": lambda: max_iou_dense(anchors, gt, counts),
        }[impl]
    elif op == "topn":
        fn = {
            "kernel": lambda: layers.topn_iou_match(anchors, gt, counts, 50, levels),
            "dense": lambda: layers.topn_iou_match_reference(anchors, gt, counts, 50),
        }[impl]
    elif op == "atss":
        fn = {
            "kernel": lambda: layers.atss_candidate_stats(
                anchors, levels, gt, counts, anchors_per_location=A
            ),
            "reference": lambda: layers.atss_candidate_stats_reference(
                anchors, levels, gt, counts, anchors_per_location=A
            ),
            "dense": lambda: atss_dense(anchors, levels, gt, counts, A=A),
        }[impl]
    else:
        reg = torch.randn(N, R, 4) * 0.2
        matched = None
        if op == "iou_matched":
            matched = torch.randint(-1, M, (N, R))
        fn = {
            "kernel": lambda: layers.iou_after_regression(anchors, reg, gt, counts, matched),
            "reference": lambda: layers.iou_after_regression_reference(
                anchors, reg, gt, counts, matched
            ),
        }[impl]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/statm") as f:  # resident pages now (Linux)
        resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    if op in ("max_iou", "topn"):
        # an upper bound of the call's peak extra resident memory that cannot under-read: the
        # high-water mark after the call minus the resident size before it
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - resident
    return {"time_s": median_time(fn, first, repeats), "peak_extra_mib": peak / 1024.0, "R": R}


# --------------------------------------------------------------------------------------------
# driver
NUM_ANCHORS = {1: 22300, 9: 200700, 25: 557500}  # 800x1333, P3-P7


def estimated_bytes(op, impl, A, M, N):
    """Size of the largest dense intermediates (the skip rule), in bytes."""
    R = NUM_ANCHORS[A]
    R0 = math.ceil(IMAGE[0] / 8) * math.ceil(IMAGE[1] / 8) * A
    if impl == "kernel":
        return 0
    if (
        op == "atss" and impl == "dense"
    ):  # per image: ious, distances (+ broadcast diff x2), ious_inf
        return 5 * R * M * 4
    if (
        op == "atss" and impl == "reference"
    ):  # (N, M, R0) d2 + sort values/indices; (N, M, R) claims
        return max(N * M * R0 * (4 * 4 + 8), N * M * R * 5)
    if op == "max_iou":  # detectron2 pairwise_iou + Matcher: measured ~25 bytes per pair
        return 25 * N * R * M
    if op == "topn":  # dense IoU, topk, int64 cumsum of the ties, masks: ~32 bytes per pair
        return 32 * N * R * M
    if op == "iou_max":  # (N, R, M) intermediates of the dense reference
        return 8 * N * R * M * 4
    return 0


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="a few small cases only")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--budget-gib",
        type=float,
        default=4.0,
        help="skip non-kernel cases whose dense intermediates exceed this (24 GiB shared RAM)",
    )
    p.add_argument(
        "--max-pairs",
        type=float,
        default=4e8,
        help="skip non-kernel cases with more than this many N*R*M (anchor, GT) pairs (time)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the raw rows here")
    p.add_argument(
        "--ops",
        default="atss,iou_max,iou_matched,max_iou,topn,soft_nms",
        help="comma-separated subset",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(run_case(*json.loads(args.child), repeats=args.repeats)))
        return

    As, Ms, Ns = ((1, 9), (10, 100, 1000), (1, 8)) if not args.quick else ((1,), (10, 100), (1,))
    # the IoU-matching ops: one image, A = 9 and 25, up to 2000 GTs
    match_cases = ((9, 25), (10, 100, 500, 2000), (1,)) if not args.quick else ((9,), (10,), (1,))
    plan = []
    for op, impls in (
        ("atss", ("kernel", "reference", "dense")),
        ("iou_max", ("kernel", "reference")),
        ("iou_matched", ("kernel", "reference")),
        ("max_iou", ("kernel", "dense")),
        ("topn", ("kernel", "dense")),
    ):
        if op not in args.ops.split(","):
            continue
        for A in match_cases[0] if op in ("max_iou", "topn") else As:
            for N in match_cases[2] if op in ("max_iou", "topn") else Ns:
                for M in match_cases[1] if op in ("max_iou", "topn") else Ms:
                    plan.append((op, impls, A, M, N))
    rows = []
    import torch

    print(f"# torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs\n")
    print(
        "| op | A | R | M | N | kernel ms | reference ms | dense ms "
        "| kernel MiB | reference MiB | dense MiB | speed-up vs ref | vs dense |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for op, impls, A, M, N in plan:
        res = {}
        for impl in impls:
            est = estimated_bytes(op, impl, A, M, N)
            pairs = N * NUM_ANCHORS[A] * M
            if est > args.budget_gib * 2**30:
                res[impl] = {"skipped": f"skip: {est / 2**30:.1f} GiB"}
                continue
            if impl != "kernel" and op != "iou_matched" and pairs > args.max_pairs:
                res[impl] = {"skipped": f"skip: {pairs:.1e} pairs"}
                continue
            cmd = [
                sys.executable,
                __file__,
                "--child",
                json.dumps([op, impl, A, M, N]),
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
            ]
            env = dict(os.environ, PYTHONWARNINGS="ignore")
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                res[impl] = {"skipped": f"failed rc={out.returncode}"}
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            res[impl] = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"op": op, "A": A, "M": M, "N": N, **{k: v for k, v in res.items()}})

        def ms(impl):
            r = res.get(impl)
            if r is None:
                return "n/a"
            return r.get("skipped") or f"{1000 * r['time_s']:.1f}"

        def mib(impl):
            r = res.get(impl)
            if r is None or "skipped" in r:
                return "-"
            return f"{r['peak_extra_mib']:.0f}"

        def ratio(impl):
            r, k = res.get(impl), res.get("kernel")
            if r is None or "skipped" in r or k is None or "skipped" in k:
                return "-"
            return f"{r['time_s'] / k['time_s']:.0f}x"

        R = NUM_ANCHORS[A]
        print(
            f"| {op} | {A} | {R} | {M} | {N} | "
            f"{ms('kernel')} | {ms('reference')} | {ms('dense')} | "
            f"{mib('kernel')} | {mib('reference')} | {mib('dense')} | "
            f"{ratio('reference')} | {ratio('dense')} |",
            flush=True,
        )
    if "soft_nms" in args.ops.split(","):
        rows += soft_nms_table(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


# --------------------------------------------------------------------------------------------
# soft_nms family: detector outputs before NMS, R boxes, 80 classes (per-class soft-NMS as PADet)
# or 1 class (class-agnostic: one O(R^2) worst case), PADet's linear method, N_t 0.3.
SOFT_NMS_BOXES = (1000, 3000, 10000)
SOFT_NMS_CLASSES = (80, 1)
SOFT_NMS_KEPT = (300, -1)  # PADet's top 300, and every box (the full process)


def make_detections(R, num_classes, seed=0):
    """R boxes jittered around R/20 objects of an 800x1333 image (so they overlap as a detector's
    outputs do), scores in (0, 1], classes: the object's class (1 class: all 0)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    H, W = IMAGE
    K = max(R // 20, 1)
    cxy = torch.rand(K, 2, generator=g) * torch.tensor([W, H])
    wh = torch.exp(torch.rand(K, 2, generator=g) * math.log(400 / 16)) * 16
    obj = torch.randint(0, K, (R,), generator=g)
    c = cxy[obj] + (torch.rand(R, 2, generator=g) - 0.5) * 0.3 * wh[obj]
    s = wh[obj] * (1 + (torch.rand(R, 2, generator=g) - 0.5) * 0.3)
    boxes = torch.cat([c - s / 2, c + s / 2], 1)
    scores = torch.rand(R, generator=g) * 0.999 + 0.001
    classes = torch.randint(0, num_classes, (K,), generator=g)[obj]
    return boxes, scores, classes


def run_soft_nms_case(impl, num_classes, R, repeats, max_kept=-1, method="linear"):
    from semianchor import layers

    boxes, scores, classes = make_detections(R, num_classes)
    kw = dict(method=method, iou_threshold=0.3, sigma=0.5, min_score=0.001, max_kept=max_kept)
    fn = {
        "kernel": lambda: layers.soft_nms(boxes, scores, classes, **kw),
        "reference": lambda: layers.soft_nms_reference(boxes, scores, classes, **kw),
    }[impl]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    kept = len(fn()[0])
    first = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return {
        "time_s": median_time(fn, first, repeats),
        "peak_extra_mib": peak / 1024.0,
        "R": R,
        "kept": kept,
    }


def soft_nms_table(args):
    """Op vs reference, each (implementation, case) in a fresh subprocess as above."""
    print("\n| op | classes | R boxes | max_kept | kept | kernel ms | reference ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for C in SOFT_NMS_CLASSES:
        for R in SOFT_NMS_BOXES:
            for max_kept in SOFT_NMS_KEPT:
                res = {}
                for impl in ("kernel", "reference"):
                    code = (
                        "import json, sys, torch; sys.path.insert(0, %r); "
                        "import bench_kernels as b; "
                        "torch.set_num_threads(%d); "
                        "print(json.dumps(b.run_soft_nms_case(%r, %d, %d, %d, %d)))"
                        % (
                            os.path.dirname(os.path.abspath(__file__)),
                            args.threads,
                            impl,
                            C,
                            R,
                            args.repeats,
                            max_kept,
                        )
                    )
                    env = dict(os.environ, PYTHONWARNINGS="ignore")
                    out = subprocess.run(
                        [sys.executable, "-c", code], capture_output=True, text=True, env=env
                    )
                    if out.returncode != 0:
                        print(out.stderr[-2000:], file=sys.stderr)
                        res[impl] = {"skipped": f"failed rc={out.returncode}"}
                        continue
                    res[impl] = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append({"op": "soft_nms", "classes": C, "R": R, "max_kept": max_kept, **res})
                k, r = res["kernel"], res["reference"]
                ms = lambda x: x.get("skipped") or f"{1000 * x['time_s']:.1f}"  # noqa: E731
                ok = "skipped" not in k and "skipped" not in r
                speedup = f"{r['time_s'] / k['time_s']:.0f}x" if ok else "-"
                print(
                    f"| soft_nms | {C} | {R} | {max_kept} | {k.get('kept', '-')} | {ms(k)} | "
                    f"{ms(r)} | {speedup} |",
                    flush=True,
                )
    return rows


if __name__ == "__main__":
    main()
