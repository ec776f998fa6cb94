"""semianchor.layers max_iou_match / topn_iou_match: kernels vs detectron2's pairwise_iou + Matcher,
vs the dense references, edge cases, memory bound."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, pairwise_iou

from semianchor import extension
from semianchor.layers import (
    iou_match_levels,
    max_iou_match,
    max_iou_match_reference,
    topn_iou_match,
    topn_iou_match_reference,
)

from .helpers import grid_anchors, needs_kernel_on, random_batch, seed_chunks

needs_kernel = needs_kernel_on("cpu")  # a failure, not a skip, under SEMIANCHOR_REQUIRE_EXT=1
needs_cuda = needs_kernel_on("cuda")

# (thresholds, labels): RetinaNet, RPN, a single threshold, duplicate thresholds.
MATCHERS = [
    ((0.4, 0.5), (0, -1, 1)),
    ((0.3, 0.7), (0, -1, 1)),
    ((0.5,), (0, 1)),
    ((0.2, 0.2, 0.6), (0, -1, 1, 1)),
]


def detectron2_match(anchors, gt, counts, thresholds, labels, allow):
    """The oracle: detectron2's own pairwise_iou and Matcher, image by image."""
    matcher = Matcher(list(thresholds), list(labels), allow_low_quality_matches=allow)
    N, R = gt.shape[0], anchors.shape[-2]
    out_m = torch.zeros((N, R), dtype=torch.int64)
    out_l = torch.zeros((N, R), dtype=torch.int8)
    out_v = torch.zeros((N, R))
    for n in range(N):
        a = anchors[n] if anchors.dim() == 3 else anchors
        iou = pairwise_iou(Boxes(gt[n, : int(counts[n])]), Boxes(a))
        out_m[n], out_l[n] = matcher(iou)
        if iou.shape[0]:
            out_v[n] = iou.max(dim=0).values
    return out_m, out_l, out_v


def assert_equal(out, ref, names=("matched", "labels", "iou")):
    for o, r, name in zip(out, ref, names):
        assert o.shape == r.shape, name
        assert o.dtype == r.dtype, (name, o.dtype, r.dtype)
        assert torch.equal(
            o.cpu(), r.cpu()
        ), f"{name} differs at {(o.cpu() != r.cpu()).nonzero()[:5].tolist()}"


def check_all_paths(anchors, levels, gt, counts, topn=9, matchers=MATCHERS, oracle=True):
    """Kernel (grid with given / inferred levels, exhaustive) == reference (== detectron2)."""
    for thresholds, labels in matchers:
        for allow in (True, False):
            kw = dict(thresholds=thresholds, labels=labels, allow_low_quality_matches=allow)
            ref = max_iou_match_reference(anchors, gt, counts, **kw)
            if oracle:
                assert_equal(ref, detectron2_match(anchors, gt, counts, thresholds, labels, allow))
            for lv, grid in ((levels, True), (None, True), (levels, False)):
                assert_equal(max_iou_match(anchors, gt, counts, lv, grid=grid, **kw), ref)
    ref = topn_iou_match_reference(anchors, gt, counts, topn)
    for lv, grid in ((levels, True), (None, True), (levels, False)):
        assert_equal(
            topn_iou_match(anchors, gt, counts, topn, lv, grid=grid), ref, ("matched", "iou")
        )


def _random_case(seed):
    gen = torch.Generator().manual_seed(seed)
    H = int(torch.randint(16, 112, (1,), generator=gen))
    W = int(torch.randint(16, 112, (1,), generator=gen))
    A = (1, 3, 9)[seed % 3]
    anchors, levels = grid_anchors(
        (H, W), strides=(8, 16, 32), anchors_per_location=A, offset=(0.0, 0.5)[seed % 2]
    )
    N = int(torch.randint(1, 4, (1,), generator=gen))
    kinds = "mixed" if seed % 4 else "normal"  # "mixed" has zero-area GTs: all-positive images
    gt, counts = random_batch(gen, (H, W), N, 12, kinds=kinds, anchors=anchors)
    topn = (1, 9, 50)[(seed // 3) % 3]
    return anchors, levels, gt, counts, topn, gen


@needs_kernel
@pytest.mark.parametrize("seeds", seed_chunks(240, 4))
def test_random_batches_match_detectron2(seeds):
    """240 random padded batches x 4 matchers x low-quality on/off, every kernel path."""
    for seed in seeds:
        anchors, levels, gt, counts, topn, _ = _random_case(seed)
        assert all(l["grid"] is not None for l in iou_match_levels(anchors, levels)[0])
        check_all_paths(anchors, levels, gt, counts, topn, matchers=MATCHERS[seed % 2 :: 2])


@needs_kernel
@pytest.mark.parametrize("seed", range(40))
def test_per_image_anchors(seed):
    """(N, R, 4) anchors: per-image shifted grids (grid path per image) and promoted anchors."""
    anchors, levels, gt, counts, topn, gen = _random_case(1000 + seed)
    N = gt.shape[0]
    shifts = torch.randint(-8, 9, (N, 1, 2), generator=gen).float().repeat(1, 1, 2)
    per_image = anchors[None] + shifts
    if seed % 2:  # promote some anchors of each image to arbitrary boxes: not a grid any more
        pick = torch.rand(per_image.shape[:2], generator=gen) < 0.1
        xy = torch.rand(per_image.shape[:2] + (2,), generator=gen) * 100
        wh = torch.rand(per_image.shape[:2] + (2,), generator=gen) * 60
        per_image = torch.where(pick[..., None], torch.cat([xy, xy + wh], -1), per_image)
    else:
        assert all(l["grid"] for s in iou_match_levels(per_image, levels) for l in s)
    check_all_paths(per_image, levels, gt, counts, topn, matchers=MATCHERS[:2])


def _edge_cases():
    gen = torch.Generator().manual_seed(3)
    anchors, levels = grid_anchors((64, 96), strides=(8, 16, 32), anchors_per_location=3)
    R = anchors.shape[0]
    a0 = anchors[:8]
    cases = {
        "no_gt": (anchors, levels, torch.zeros(2, 0, 4), torch.zeros(2, dtype=torch.long)),
        "padded_no_gt": (
            anchors,
            levels,
            torch.full((2, 3, 4), float("nan")),
            torch.tensor([0, 0]),
        ),
        "one_gt": (anchors, levels, torch.tensor([[[10.0, 12.0, 40.0, 50.0]]]), torch.tensor([1])),
        "zero_area": (
            anchors,
            levels,
            torch.tensor([[[10.0, 10.0, 10.0, 40.0], [5.0, 5.0, 30.0, 30.0]]]),
            torch.tensor([2]),
        ),
        "point": (anchors, levels, torch.tensor([[[20.0, 20.0, 20.0, 20.0]]]), torch.tensor([1])),
        "out_of_image": (
            anchors,
            levels,
            torch.tensor([[[-500.0, -500.0, -300.0, -200.0], [0.0, 0.0, 30.0, 30.0]]]),
            torch.tensor([2]),
        ),
        "duplicates": (
            anchors,
            levels,
            torch.tensor([[[8.0, 8.0, 40.0, 40.0]] * 4]),
            torch.tensor([4]),
        ),
        # GTs equal to anchors: IoU 1 ties between duplicate GTs, and ties across anchors
        "gt_equals_anchors": (
            anchors,
            levels,
            anchors[[5, 17, 17, 40, 200]][None],
            torch.tensor([5]),
        ),
        # a GT covering everything: every anchor ties on IoU ratios of the level's shapes
        "whole_image": (
            anchors,
            levels,
            torch.tensor([[[-1e4, -1e4, 1e4, 1e4]]]),
            torch.tensor([1]),
        ),
        "huge_coordinates": (
            anchors,
            levels,
            torch.tensor([[[-1e30, -1e30, 1e30, 1e30], [3e4, 3e4, 1e30, 1e30]]]),
            torch.tensor([2]),
        ),
        "tiny_r": (
            a0,
            [8],
            torch.tensor([[[0.0, 0.0, 20.0, 20.0], [1.0, 1.0, 2.0, 2.0]]]),
            torch.tensor([2]),
        ),
        "no_anchors": (
            anchors[:0],
            [0],
            torch.tensor([[[0.0, 0.0, 20.0, 20.0]]]),
            torch.tensor([1]),
        ),
        "no_images": (anchors, levels, torch.zeros(0, 3, 4), torch.zeros(0, dtype=torch.long)),
        "2000_gts": (
            anchors,
            levels,
            *random_batch(gen, (64, 96), 2, 2000, kinds="mixed", anchors=anchors),
        ),
        "2000_gts_normal": (
            anchors,
            levels,
            *random_batch(gen, (64, 96), 1, 2000, kinds="normal", anchors=anchors),
        ),
        "grid_aligned": (
            anchors,
            levels,
            *random_batch(gen, (64, 96), 3, 30, kinds="aligned", anchors=anchors),
        ),
        "midway": (
            anchors,
            levels,
            *random_batch(gen, (64, 96), 3, 30, kinds="midway", anchors=anchors),
        ),
        # arbitrary (non-grid) anchors: exhaustive path
        "random_anchors": (
            _random_anchors(gen, 300),
            [300],
            *random_batch(gen, (64, 96), 2, 10, kinds="normal"),
        ),
        "degenerate_anchors": (
            torch.cat(
                [anchors[:50], torch.tensor([[5.0, 5.0, 5.0, 9.0], [30.0, 30.0, 20.0, 20.0]])]
            ),
            [52],
            torch.tensor([[[0.0, 0.0, 40.0, 40.0], [25.0, 25.0, 35.0, 35.0]]]),
            torch.tensor([2]),
        ),
    }
    assert R > 0
    return cases


def _random_anchors(gen, n):
    xy = torch.rand(n, 2, generator=gen) * 90
    wh = torch.rand(n, 2, generator=gen) * 40 + 1
    return torch.cat([xy, xy + wh], 1)


EDGE = _edge_cases()


@needs_kernel
@pytest.mark.parametrize("case", sorted(EDGE))
def test_edge_cases(case):
    anchors, levels, gt, counts = EDGE[case]
    check_all_paths(anchors, levels, gt, counts, topn=9)
    check_all_paths(anchors, levels, gt, counts, topn=1000, matchers=MATCHERS[:1], oracle=False)


@needs_kernel
def test_low_quality_semantics_by_hand():
    """Rule 3: ties of a GT's best IoU all become positive, keeping their own best GT."""
    anchors = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [20.0, 0.0, 30.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [100.0, 0, 110, 10],
        ]
    )
    # GT 0 overlaps anchors 0, 2 equally (IoU 0.25) and anchor 1 less; GT 1 = anchor 0 exactly.
    gt = torch.tensor([[[0.0, 0.0, 10.0, 40.0], [0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 25.0, 10.0]]])
    m, lab, v = max_iou_match(anchors, gt, torch.tensor([3]), thresholds=(0.6, 0.9))
    assert m.tolist() == [[1, 2, 1, 0]]  # anchor 1: GT 2 (0.5); anchor 3 overlaps nothing: GT 0
    assert lab.tolist() == [[1, 1, 1, 0]]  # anchors 0, 2: IoU 1 >= 0.9; anchor 1: GT 2's best
    assert v.tolist() == [[1.0, 0.5, 1.0, 0.0]]
    _, lab, _ = max_iou_match(
        anchors, gt, torch.tensor([3]), thresholds=(0.6, 0.9), allow_low_quality_matches=False
    )
    assert lab.tolist() == [[1, 0, 1, 0]]
    # a zero-area GT: its best IoU is 0, reached by every anchor -> the whole image is positive
    gt0 = torch.cat([gt, torch.tensor([[[5.0, 5.0, 5.0, 8.0]]])], 1)
    _, lab, _ = max_iou_match(anchors, gt0, torch.tensor([4]))
    assert lab.tolist() == [[1, 1, 1, 1]]


@needs_kernel
def test_thresholds_compared_in_float32():
    """An IoU equal to a threshold (as float32) is in the upper interval, as in detectron2."""
    gen = torch.Generator().manual_seed(5)
    anchors, levels = grid_anchors((64, 64), strides=(8, 16), anchors_per_location=3)
    gt, counts = random_batch(gen, (64, 64), 2, 8, kinds="normal")
    _, _, v = max_iou_match(anchors, gt, counts, levels)
    vals = v[v > 0].unique()
    t = float(vals[len(vals) // 2])
    for thr in (t, t + 1e-12, t - 1e-12, float(torch.tensor(t).nextafter(torch.tensor(1.0)))):
        for allow in (True, False):
            kw = dict(thresholds=(thr,), labels=(0, 1), allow_low_quality_matches=allow)
            ref = detectron2_match(anchors, gt, counts, (thr,), (0, 1), allow)
            assert_equal(max_iou_match(anchors, gt, counts, levels, **kw), ref)
            assert_equal(max_iou_match_reference(anchors, gt, counts, **kw), ref)


def _brute_topn(anchors, gt, counts, topn):
    """Independent top-N: sort every GT's row by (-IoU, index) in Python."""
    N, R = gt.shape[0], anchors.shape[-2]
    matched = torch.full((N, R), -1, dtype=torch.int64)
    best = torch.zeros((N, R))
    for n in range(N):
        a = anchors[n] if anchors.dim() == 3 else anchors
        iou = pairwise_iou(Boxes(gt[n, : int(counts[n])]), Boxes(a))
        for m in range(iou.shape[0]):
            row = iou[m].tolist()
            order = sorted(range(R), key=lambda r: (-row[r], r))[:topn]
            for r in order:
                if row[r] > 0 and (
                    row[r] > best[n, r] or (row[r] == best[n, r] and matched[n, r] > m)
                ):
                    matched[n, r], best[n, r] = m, row[r]
    return matched, best


@needs_kernel
@pytest.mark.parametrize("seed", range(10))
def test_topn_against_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    anchors, levels = grid_anchors((40, 48), strides=(8, 16), anchors_per_location=3)
    gt, counts = random_batch(gen, (40, 48), 2, 6, anchors=anchors)
    for topn in (1, 5, 40):
        ref = _brute_topn(anchors, torch.nan_to_num(gt), counts, topn)
        assert_equal(topn_iou_match(anchors, gt, counts, topn, levels), ref, ("matched", "iou"))


@needs_kernel
def test_detectron2_anchor_generator_levels_are_recognised():
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

    sizes = [[x * 2 ** (i / 3) for i in range(3)] for x in (32, 64, 128)]
    gen = DefaultAnchorGenerator(
        sizes=sizes, aspect_ratios=[[0.5, 1.0, 2.0]], strides=[8, 16, 32], offset=0.5
    )
    feats = [torch.zeros(1, 1, (100 + s - 1) // s, (140 + s - 1) // s) for s in (8, 16, 32)]
    per_level = gen(feats)
    anchors, levels = torch.cat([b.tensor for b in per_level]), [len(b) for b in per_level]
    for lv in (levels, None):
        got = iou_match_levels(anchors, lv)[0]
        assert [l["count"] for l in got] == levels
        assert [l["grid"] for l in got] == [(18, 13, 9), (9, 7, 9), (5, 4, 9)]
    assert iou_match_levels(anchors, levels, grid=False)[0][0]["grid"] is None
    g2 = torch.Generator().manual_seed(0)
    gt, counts = random_batch(g2, (100, 140), 2, 20, kinds="normal")
    check_all_paths(anchors, levels, gt, counts, matchers=MATCHERS[:1])


@needs_kernel
def test_half_and_double_inputs():
    anchors, levels = grid_anchors((32, 32), strides=(8,), anchors_per_location=3)
    gt = torch.tensor([[[2.0, 3.0, 20.0, 17.0]]])
    ref = max_iou_match(anchors, gt, torch.tensor([1]))
    assert_equal(
        max_iou_match(anchors.double(), gt.double(), torch.tensor([1], dtype=torch.int32)), ref
    )
    out = topn_iou_match(anchors.half(), gt.half(), torch.tensor([1]), 5)
    assert out[0].dtype == torch.int64 and out[1].dtype == torch.float32


@needs_kernel
def test_bad_inputs_raise_clear_errors():
    anchors, levels = grid_anchors((32, 32), strides=(8,))
    gt, counts = torch.tensor([[[0.0, 0, 10, 10]]]), torch.tensor([1])
    cases = [
        (lambda: max_iou_match(anchors[:, :3], gt, counts), "anchors must have shape"),
        (lambda: max_iou_match(anchors[None].repeat(2, 1, 1), gt, counts), "per-image anchors"),
        (lambda: max_iou_match(anchors, gt[0], counts), "gt_boxes must have shape"),
        (lambda: max_iou_match(anchors, gt, torch.tensor([1, 1])), "gt_counts must have shape"),
        (lambda: max_iou_match(anchors, gt, torch.tensor([2])), "gt_counts must lie in"),
        (lambda: max_iou_match(anchors, gt * float("nan"), counts), "non-finite"),
        (lambda: max_iou_match(anchors * float("inf"), gt, counts), "anchors holds non-finite"),
        (lambda: max_iou_match(anchors, gt, counts, [1, 2]), "num_anchors_per_level must"),
        (lambda: max_iou_match(anchors, gt, counts, thresholds=(0.5, 0.4)), "sorted"),
        (
            lambda: max_iou_match(anchors, gt, counts, thresholds=(0.0, 0.5)),
            "thresholds[0] must be > 0",
        ),
        (lambda: max_iou_match(anchors, gt, counts, labels=(0, 1)), "labels must have"),
        (lambda: max_iou_match(anchors, gt, counts, labels=(0, 2, 1)), "labels must be -1, 0 or 1"),
        (lambda: max_iou_match(anchors, gt, counts, grid="auto"), "grid must be"),
        (lambda: topn_iou_match(anchors, gt, counts, -1), "topn must be"),
        (lambda: topn_iou_match(anchors, gt, counts, 2.5), "topn must be"),
        (lambda: topn_iou_match(anchors.long(), gt, counts, 5), "floating-point"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            fn()
    # the ops themselves (no Python wrapper) check too
    with pytest.raises(RuntimeError, match="anchors must have shape"):
        torch.ops.semianchor.max_iou_match(
            anchors[:, :2], gt, counts, [], [0.5], [0, 1], True, True
        )
    with pytest.raises(ValueError, match="non-finite"):
        torch.ops.semianchor.topn_iou_match(anchors, gt * float("nan"), counts, [], 5, True)


@needs_kernel
def test_opcheck():
    gen = torch.Generator().manual_seed(0)
    anchors, levels = grid_anchors((48, 64), strides=(8, 16), anchors_per_location=3)
    gt, counts = random_batch(gen, (48, 64), 2, 5, kinds="normal")
    per_image = anchors[None].repeat(2, 1, 1) + 1.0
    for a in (anchors, per_image):
        for lv in (levels, []):
            torch.library.opcheck(
                torch.ops.semianchor.max_iou_match.default,
                (a, gt, counts, lv, [0.4, 0.5], [0, -1, 1], True, True),
            )
            torch.library.opcheck(
                torch.ops.semianchor.topn_iou_match.default, (a, gt, counts, lv, 9, False)
            )


@needs_cuda
@pytest.mark.parametrize("seeds", seed_chunks(60, 2))
def test_cuda_matches_cpu(seeds):
    for seed in seeds:
        anchors, levels, gt, counts, topn, _ = _random_case(seed)
        for a in (anchors, anchors[None].repeat(gt.shape[0], 1, 1)):
            for lv, grid in ((levels, True), (None, True), (levels, False)):
                for thresholds, labels in MATCHERS:
                    kw = dict(thresholds=thresholds, labels=labels)
                    cpu = max_iou_match(a, gt, counts, lv, grid=grid, **kw)
                    cuda = max_iou_match(a.cuda(), gt.cuda(), counts.cuda(), lv, grid=grid, **kw)
                    assert_equal(cuda, cpu)
                cpu = topn_iou_match(a, gt, counts, topn, lv, grid=grid)
                cuda = topn_iou_match(a.cuda(), gt.cuda(), counts.cuda(), topn, lv, grid=grid)
                assert_equal(cuda, cpu, ("matched", "iou"))


@needs_cuda
@pytest.mark.parametrize("case", sorted(EDGE))
def test_cuda_edge_cases(case):
    anchors, levels, gt, counts = EDGE[case]
    for allow in (True, False):
        cpu = max_iou_match(anchors, gt, counts, levels, allow_low_quality_matches=allow)
        cuda = max_iou_match(
            anchors.cuda(), gt.cuda(), counts.cuda(), levels, allow_low_quality_matches=allow
        )
        assert_equal(cuda, cpu)
    assert_equal(
        topn_iou_match(anchors.cuda(), gt.cuda(), counts.cuda(), 9, levels),
        topn_iou_match(anchors, gt, counts, 9, levels),
        ("matched", "iou"),
    )


# ---------------------------------------------------------------------------------------------
# memory: peak resident memory of a fresh process, measured around one call
_MEMORY_CHILD = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, {root!r})
    from tests.layers.helpers import grid_anchors
    from semianchor.layers import max_iou_match, max_iou_match_reference, topn_iou_match
    torch.set_num_threads(1)
    anchors, levels = grid_anchors((800, 1333), anchors_per_location=9)
    g = torch.Generator().manual_seed(0)
    M = 2000
    cxy = torch.rand(1, M, 2, generator=g) * torch.tensor([1333.0, 800.0])
    wh = torch.rand(1, M, 2, generator=g) * 200 + 4
    gt, counts = torch.cat([cxy - wh / 2, cxy + wh / 2], -1), torch.tensor([M])
    small_gt, small_counts = gt[:, :100].contiguous(), torch.tensor([100])
    max_iou_match(anchors[:100], small_gt, small_counts)  # load the ops, warm the allocator
    topn_iou_match(anchors[:100], small_gt, small_counts, 5)
    def status(key):  # bytes
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))
    def peak_extra(fn):
        # Reset the kernel's resident high-water mark (VmHWM) to the current resident size, run
        # fn, and read how far the high-water mark rose: the call's peak extra resident memory.
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:  # no reset: an upper bound (the earlier high-water mark may be higher)
            pass
        before = status("VmRSS")
        fn()
        return status("VmHWM") - before
    out = {{"R": anchors.shape[0], "M": M}}
    out["max_iou"] = peak_extra(lambda: max_iou_match(anchors, gt, counts, levels))
    out["topn"] = peak_extra(lambda: topn_iou_match(anchors, gt, counts, 50, levels))
    out["exhaustive"] = peak_extra(lambda: max_iou_match(anchors, gt, counts, grid=False))
    # control: the dense reference at M = 100 must register its (M, R) matrices
    out["dense_100"] = peak_extra(lambda: max_iou_match_reference(anchors, small_gt, small_counts))
    print(json.dumps(out))
    """)


@needs_kernel
def test_memory_is_independent_of_m_times_r():
    """2000 GTs x 200,700 anchors: R x M x 4 bytes = 1.6 GB. In a fresh process, each kernel's
    peak extra resident memory (Linux VmHWM, reset through /proc/self/clear_refs just before the
    call, minus VmRSS before it) stays below 1/20 of that and below 64 MiB; the dense reference
    at M = 100 (80 MB per (M, R) float matrix) shows that the measurement sees dense allocations."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = _MEMORY_CHILD.format(root=root)
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=root)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    R, M = out["R"], out["M"]
    dense = R * M * 4
    for key in ("max_iou", "topn", "exhaustive"):
        assert out[key] < dense / 20, (key, out)
        assert out[key] < 64 * 2**20, (key, out)  # outputs (N, R) + keys: ~5 MB
    assert out["dense_100"] > R * 100 * 4, out


# ---------------------------------------------------------------------------------------------
# the assigners that use the ops: same results as the dense formulation
def _dense_max_iou_assigner(inputs, matcher):
    """The dense formulation of MaxIoUAssigner.assign: per image pairwise_iou + Matcher."""
    N, R = inputs.num_images, inputs.num_anchors
    matched = torch.full((N, R), -1, dtype=torch.int64)
    ious = torch.zeros((N, R))
    for i in range(N):
        m = int(inputs.gt_counts[i])
        if m == 0:
            continue
        iou = pairwise_iou(Boxes(inputs.gt_boxes[i, :m]), Boxes(inputs.image_anchors(i)))
        idx, lab = matcher(iou)
        ious[i] = iou.max(dim=0).values
        matched[i] = torch.where(lab == 1, idx, torch.where(lab == 0, -1, -2))
    return matched.clamp(min=-1), ious


@needs_kernel
@pytest.mark.parametrize("seed", range(6))
def test_assigners_match_their_dense_bodies(seed):
    from semianchor.modeling.assigners import AssignInputs, MaxIoUAssigner
    from semianchor.modeling.assigners.cleanliness import topn_iou_assignment

    anchors, levels, gt, counts, topn, gen = _random_case(2000 + seed)
    gt = torch.nan_to_num(gt)
    counts[0] = 0  # an image without GTs
    N, M = gt.shape[:2]
    if seed % 2:
        anchors = anchors[None] + torch.randint(-4, 5, (N, 1, 4), generator=gen).float()
    inputs = AssignInputs(
        anchors=anchors,
        num_anchors_per_level=levels,
        anchor_strides=torch.ones(anchors.shape[-2]),
        anchors_per_location=1,
        gt_boxes=gt,
        gt_classes=torch.zeros((N, M), dtype=torch.long),
        gt_counts=counts,
        num_classes=3,
    )
    for kw in (
        dict(thresholds=(0.4, 0.5), labels=(-1, -1, 1)),
        dict(thresholds=(0.5,), labels=(0, 1), allow_low_quality_matches=False),
        dict(),
    ):
        a = MaxIoUAssigner(**kw)
        res = a(inputs)
        matched, ious = _dense_max_iou_assigner(inputs, a.matcher)
        assert torch.equal(res.matched_gt, matched)
        assert torch.equal(res.extras["max_iou"], ious)
    assert_equal(
        topn_iou_assignment(anchors, gt, counts, topn),
        topn_iou_match_reference(anchors, gt, counts, topn),
        ("matched", "iou"),
    )


@needs_kernel
@pytest.mark.parametrize("seed", range(8))
def test_visit_finds_every_overlap_once_for_any_thread_split(seed):
    """The window visit shared by the CPU and CUDA kernels, run on the CPU: for every GT, the
    union over cooperating threads (start = 0..step-1; step = 1 is the CPU's nested loop, 128 the
    CUDA block) is exactly the set of anchors with IoU > 0, each once, with detectron2's IoU."""
    anchors, levels, gt, counts, _, gen = _random_case(3000 + seed)
    if seed % 4 == 3:  # jittered grid: anchors off their ideal centres (measured extents)
        anchors = anchors + (torch.rand(anchors.shape, generator=gen) - 0.5) * 3
    boxes = torch.nan_to_num(gt).view(-1, 4)
    dense = pairwise_iou(Boxes(boxes), Boxes(anchors))
    for m in range(boxes.shape[0]):
        expect = dense[m].nonzero()[:, 0]
        for lv, grid in ((levels, True), (None, True), (levels, False)):
            for step in (1, 7, 128):
                parts = [
                    torch.ops.semianchor._iou_match_visit(
                        anchors, boxes[m], lv or [], grid, s, step
                    )
                    for s in range(step)
                ]
                idx = torch.cat([p[0] for p in parts])
                val = torch.cat([p[1] for p in parts])
                order = idx.argsort()
                assert torch.equal(idx[order], expect), (m, lv is None, grid, step)
                assert torch.equal(val[order], dense[m, expect])


@needs_kernel
def test_fallback_to_reference_warns_once(monkeypatch):
    anchors, levels, gt, counts, topn, _ = _random_case(7)
    per_image = anchors[None].repeat(gt.shape[0], 1, 1)
    kernel = max_iou_match(per_image, gt, counts, levels)
    kernel_topn = topn_iou_match(anchors, gt, counts, topn)
    monkeypatch.setattr(extension, "has_ops", lambda device=None, op=None: False)
    monkeypatch.setattr(extension, "_warned", set())
    with pytest.warns(RuntimeWarning, match="max_iou_match"):
        assert_equal(max_iou_match(per_image, gt, counts, levels), kernel)
    with pytest.warns(RuntimeWarning, match="topn_iou_match"):
        assert_equal(topn_iou_match(anchors, gt, counts, topn), kernel_topn, ("matched", "iou"))
    with pytest.raises(ValueError, match="non-finite"):  # the Python-side value checks
        max_iou_match(anchors, gt.nan_to_num() * float("inf"), counts.clamp(min=1))
