"""soft_nms: kernels == reference (bit-exact), the reference == a plain transcription of
Algorithm 1, the hard method == torchvision's batched_nms, ties, edge cases, errors,
registration."""

import math
import warnings

import pytest
import torch
from torchvision.ops import batched_nms

from semianchor import extension
from semianchor.layers import soft_nms, soft_nms_reference

from .helpers import needs_kernel_on, seed_chunks

needs_kernel = needs_kernel_on("cpu")  # a failure, not a skip, under SEMIANCHOR_REQUIRE_EXT=1
needs_cuda = needs_kernel_on("cuda")

METHODS = ("linear", "gaussian", "hard")


# ------------------------------------------------------------------------------------------------
# Algorithm 1 of Bodla et al. (2017), transcribed with Python floats and lists, independently of
# the library: B the boxes, S their scores, D the kept ones; per class; ties -> lowest index.
def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def algorithm1(boxes, scores, classes, method, Nt, sigma, min_score, max_kept=-1):
    boxes = [[float(v) for v in b] for b in boxes]
    S = [float(s) for s in scores]
    classes = [0] * len(S) if classes is None else [int(c) for c in classes]
    B = [i for i in range(len(S)) if S[i] >= min_score]
    D = []
    while B and (max_kept < 0 or len(D) < max_kept):
        m = B[0]
        for i in B:
            if S[i] > S[m] or (S[i] == S[m] and i < m):
                m = i
        D.append((m, S[m]))
        B.remove(m)
        for i in list(B):
            if classes[i] != classes[m]:
                continue
            iou = _iou(boxes[m], boxes[i])
            if method == "linear":
                if iou >= Nt:
                    S[i] *= 1 - iou
            elif method == "gaussian":
                S[i] *= math.exp(-iou * iou / sigma)
            elif iou >= Nt:
                S[i] = 0.0
            if S[i] < min_score:
                B.remove(i)
    return [d[0] for d in D], [d[1] for d in D]


def assert_same(out, ref):
    assert out[0].dtype == torch.int64 and out[1].dtype == torch.float32
    assert torch.equal(out[0], ref[0]), (out[0], ref[0])
    assert torch.equal(out[1], ref[1]), (out[1], ref[1])


def assert_matches_algorithm1(out, boxes, scores, classes, **kw):
    keep, kept = algorithm1(
        boxes.tolist(),
        scores.tolist(),
        None if classes is None else classes.tolist(),
        kw.get("method", "linear"),
        kw.get("iou_threshold", 0.3),
        kw.get("sigma", 0.5),
        kw.get("min_score", 0.001),
        kw.get("max_kept", -1),
    )
    assert out[0].tolist() == keep
    torch.testing.assert_close(out[1], torch.tensor(kept), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# random inputs
def _random_case(seed):
    g = torch.Generator().manual_seed(seed)
    R = int(torch.randint(0, 41, (1,), generator=g))
    kind = seed % 4
    if kind == 0:  # small integer grid: duplicates, zero-area boxes, exact IoUs
        xy = torch.randint(0, 6, (R, 2), generator=g).float()
        wh = torch.randint(0, 4, (R, 2), generator=g).float()
    else:  # continuous, clustered so that boxes overlap a lot
        xy = torch.rand(R, 2, generator=g) * 20
        wh = torch.rand(R, 2, generator=g) * 12
        if kind == 3:
            wh[torch.rand(R, generator=g) < 0.2] = 0.0
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(R, generator=g)
    if seed % 3 == 0:  # ties
        scores = (scores * 4).floor() / 4 + 0.25
    num_classes = int(torch.randint(1, 5, (1,), generator=g))
    classes = torch.randint(0, num_classes, (R,), generator=g) * 7 - 3  # arbitrary labels
    if seed % 5 == 0:
        classes = None
    kw = dict(
        method=METHODS[seed % 3],
        iou_threshold=[0.0, 0.3, 0.5, 0.7, float(torch.rand(1, generator=g))][seed % 5],
        sigma=[0.5, 0.1, 2.0][(seed // 3) % 3],
        min_score=[0.0, 0.001, 0.05, 0.3][(seed // 7) % 4],
        max_kept=[-1, -1, 0, 1, 5, 20][(seed // 11) % 6],
    )
    return boxes, scores, classes, kw


@needs_kernel
@pytest.mark.parametrize("seeds", seed_chunks(600, 4))
def test_random_cases_kernel_matches_reference(seeds):
    kept_total = 0
    for seed in seeds:
        boxes, scores, classes, kw = _random_case(seed)
        out = soft_nms(boxes, scores, classes, **kw)
        ref = soft_nms_reference(boxes, scores, classes, **kw)
        assert_same(out, ref)
        kept_total += len(out[0])
    assert kept_total > 1000  # the cases are not trivially empty


@pytest.mark.parametrize("seeds", seed_chunks(200, 2))
def test_random_cases_reference_matches_algorithm1(seeds):
    for seed in seeds:
        boxes, scores, classes, kw = _random_case(seed)
        if seed % 4 != 0:  # only exact-IoU inputs: double and float thresholds agree there
            continue
        out = soft_nms_reference(boxes, scores, classes, **kw)
        assert_matches_algorithm1(out, boxes, scores, classes, **kw)


# ------------------------------------------------------------------------------------------------
# hand cases
A = [0.0, 0.0, 2.0, 1.0]
HALF = [0.0, 0.0, 1.0, 1.0]  # IoU(A, HALF) = 0.5 exactly
QUARTER = [0.0, 0.0, 0.5, 1.0]  # IoU(A, QUARTER) = 0.25, IoU(HALF, QUARTER) = 0.5
FAR = [10.0, 10.0, 12.0, 11.0]


def _impls():
    out = [soft_nms_reference]
    if extension.has_ops("cpu"):
        out.append(soft_nms)
    return out


@pytest.mark.parametrize("impl", _impls())
def test_linear_at_exactly_the_threshold(impl):
    boxes = torch.tensor([A, HALF, FAR])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # mmcv's >=: IoU == N_t decays (Detectron1's > would keep 0.8)
    keep, kept = impl(boxes, scores, method="linear", iou_threshold=0.5)
    assert keep.tolist() == [0, 2, 1]
    assert kept.tolist() == [scores[0].item(), scores[2].item(), scores[1].item() * 0.5]
    # just above the IoU: no decay
    keep, kept = impl(boxes, scores, method="linear", iou_threshold=0.5000001)
    assert keep.tolist() == [0, 1, 2] and torch.equal(kept, scores)
    # hard: suppressed at IoU == N_t
    keep, _ = impl(boxes, scores, method="hard", iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    for kw in (dict(method="linear", iou_threshold=0.5), dict(method="hard", iou_threshold=0.5)):
        assert_matches_algorithm1(impl(boxes, scores, **kw), boxes, scores, None, **kw)
    # IoU 7/10 is float32(0.7) < 0.7: N_t is rounded to float32 too, so it still counts
    seven = torch.tensor([[0.0, 0.0, 10.0, 1.0], [0.0, 0.0, 7.0, 1.0]])
    _, kept = impl(seven, scores[:2], method="linear", iou_threshold=0.7)
    assert kept[1] == scores[1] * (1 - torch.tensor(0.7))


@pytest.mark.parametrize("impl", _impls())
@pytest.mark.parametrize("method", METHODS)
def test_hand_cases_match_algorithm1(impl, method):
    cases = [
        # a decayed box falls below a weaker disjoint one (re-ordering), decayed twice
        ([A, HALF, QUARTER, FAR], [0.9, 0.85, 0.6, 0.5], None),
        # the same boxes in two classes: no interaction across classes
        ([A, HALF, QUARTER, FAR, A, HALF], [0.9, 0.85, 0.6, 0.5, 0.95, 0.3], [1, 1, 1, 1, 2, 2]),
        # nested and shifted integer boxes
        (
            [[0, 0, 4, 4], [1, 1, 4, 4], [0, 0, 2, 4], [2, 0, 4, 4], [0, 0, 4, 2]],
            [5, 4, 3, 2, 1],
            None,
        ),
    ]
    for boxes, scores, classes in cases:
        boxes = torch.tensor(boxes, dtype=torch.float32)
        scores = (
            torch.tensor(scores, dtype=torch.float32) / 5
            if max(scores) > 1
            else torch.tensor(scores)
        )
        classes = None if classes is None else torch.tensor(classes)
        for kw in (
            dict(method=method, iou_threshold=0.3, sigma=0.5, min_score=0.001),
            dict(method=method, iou_threshold=0.5, sigma=0.1, min_score=0.2),
            dict(method=method, iou_threshold=0.25, sigma=2.0, min_score=0.0, max_kept=3),
        ):
            out = impl(boxes, scores, classes, **kw)
            assert_matches_algorithm1(out, boxes, scores, classes, **kw)


@pytest.mark.parametrize("impl", _impls())
def test_gaussian_decays_below_the_threshold(impl):
    boxes = torch.tensor([A, QUARTER])
    scores = torch.tensor([0.9, 0.8])
    keep, kept = impl(boxes, scores, method="gaussian", sigma=0.5, iou_threshold=0.9)
    expected = (
        torch.tensor(0.8) * torch.exp(torch.tensor(-0.0625 / 0.5, dtype=torch.float64)).float()
    )
    assert keep.tolist() == [0, 1] and kept[1] == expected
    # the linear method leaves a box below N_t alone
    assert torch.equal(impl(boxes, scores, method="linear", iou_threshold=0.3)[1], scores)


@pytest.mark.parametrize("impl", _impls())
def test_min_score_and_max_kept(impl):
    boxes = torch.tensor([A, HALF, FAR, FAR])
    scores = torch.tensor([0.9, 0.8, 0.0005, 0.7])
    keep, kept = impl(boxes, scores, method="linear", iou_threshold=0.5, min_score=0.45)
    assert keep.tolist() == [0, 3]  # 0.8 * 0.5 < 0.45 dropped; 0.0005 below it from the start
    keep, _ = impl(boxes, scores, method="linear", iou_threshold=0.5, min_score=0.0)
    assert keep.tolist() == [0, 3, 1, 2]  # FAR duplicates: linear decays 0.0005 * 0 = 0 >= 0
    keep, kept = impl(boxes, scores, method="linear", iou_threshold=0.5, max_kept=2)
    assert keep.tolist() == [0, 3] and kept.tolist() == [scores[0].item(), scores[3].item()]
    assert impl(boxes, scores, max_kept=0)[0].shape == (0,)


# ------------------------------------------------------------------------------------------------
# ties and degenerate inputs
def _tied_cases():
    z = [3.0, 3.0, 3.0, 3.0]
    return {
        "equal_scores": ([A, HALF, FAR, QUARTER, [5, 5, 9, 9]], [0.5] * 5, None),
        "duplicates": ([A, A, A, HALF, HALF], [0.5, 0.7, 0.7, 0.7, 0.2], None),
        "duplicates_classes": ([A, A, A, A], [0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]),
        "zero_area": ([z, z, [3, 3, 3, 5], A, [0, 0, 0, 0]], [0.4, 0.4, 0.9, 0.4, 0.1], None),
        "single": ([A], [0.3], None),
        "none": (torch.zeros(0, 4).tolist(), [], None),
    }


@pytest.mark.parametrize("name", list(_tied_cases()))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("min_score", [0.0, 0.001])
def test_tied_and_degenerate_inputs(name, method, min_score):
    boxes, scores, classes = _tied_cases()[name]
    boxes = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    scores = torch.tensor(scores, dtype=torch.float32)
    classes = None if classes is None else torch.tensor(classes)
    kw = dict(method=method, iou_threshold=0.5, min_score=min_score)
    ref = soft_nms_reference(boxes, scores, classes, **kw)
    assert_matches_algorithm1(ref, boxes, scores, classes, **kw)
    if extension.has_ops("cpu"):
        assert_same(soft_nms(boxes, scores, classes, **kw), ref)
    if name == "equal_scores":  # ties -> lowest index first
        assert ref[0][0] == 0
    if name == "duplicates" and min_score > 0:
        # 1 first (ties -> lowest index); its duplicates 0, 2 (IoU 1) fall to 0 (gaussian: 0.7 *
        # exp(-2) = 0.095 for 2, 0.5 * exp(-2) * exp(-2) = 0.009 for 0, still kept)
        assert ref[0][0] == 1
        if method != "gaussian":
            assert 0 not in ref[0].tolist() and 2 not in ref[0].tolist()
    if name == "none":
        assert ref[0].shape == (0,) and ref[1].shape == (0,)


# ------------------------------------------------------------------------------------------------
def _nms_inputs(seed, R=300, num_classes=5):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(R, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(R, 2, generator=g) * 40], 1)
    scores = 0.01 + 0.99 * torch.rand(R, generator=g)
    classes = torch.randint(0, num_classes, (R,), generator=g)
    return boxes, scores, classes


@pytest.mark.parametrize("impl", _impls())
def test_hard_equals_batched_nms(impl):
    for seed in range(5):
        boxes, scores, classes = _nms_inputs(seed)
        for thr in (0.3, 0.5, 0.7):
            expected = batched_nms(boxes, scores, classes, thr)
            keep, kept = impl(boxes, scores, classes, method="hard", iou_threshold=thr)
            assert torch.equal(keep, expected)
            assert torch.equal(kept, scores[expected])  # hard never changes a kept score


@needs_kernel
def test_large_inputs_kernel_matches_reference():
    boxes, scores, classes = _nms_inputs(0, R=2000, num_classes=3)
    for method in METHODS:
        kw = dict(method=method, min_score=0.05, max_kept=300)
        assert_same(
            soft_nms(boxes, scores, classes, **kw), soft_nms_reference(boxes, scores, classes, **kw)
        )
    kw = dict(method="linear", min_score=0.001)
    assert_same(soft_nms(boxes, scores, None, **kw), soft_nms_reference(boxes, scores, None, **kw))


# ------------------------------------------------------------------------------------------------
# registration, dtypes, errors
def _op_samples(device="cpu"):
    boxes, scores, classes = _nms_inputs(1, R=40, num_classes=3)
    boxes, scores, classes = boxes.to(device), scores.to(device), classes.to(device)
    return [
        (boxes, scores, classes, "linear", 0.3, 0.5, 0.001, -1),
        (boxes, scores, None, "gaussian", 0.3, 0.5, 0.01, 10),
        (boxes, scores, classes, "hard", 0.5, 0.5, 0.0, 0),
        (boxes[:0], scores[:0], classes[:0], "linear", 0.3, 0.5, 0.001, -1),
    ]


@needs_kernel
def test_opcheck():
    for args in _op_samples():
        torch.library.opcheck(torch.ops.semianchor.soft_nms, args)


@needs_kernel
def test_fake_kernel_has_a_data_dependent_size():
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    mode = FakeTensorMode(shape_env=ShapeEnv())
    args = _op_samples()[0]
    fargs = [mode.from_tensor(a) if torch.is_tensor(a) else a for a in args]
    with mode:
        keep, kept = torch.ops.semianchor.soft_nms(*fargs)
    assert keep.dtype == torch.int64 and kept.dtype == torch.float32
    assert keep.dim() == 1 and kept.shape == keep.shape
    assert not isinstance(keep.shape[0], int)  # an unbacked SymInt


@needs_kernel
def test_half_inputs_computed_in_float32():
    boxes, scores, classes = _nms_inputs(2, R=100)
    for dtype in (torch.float16, torch.bfloat16):
        b, s = boxes.to(dtype), scores.to(dtype)
        out = soft_nms(b, s, classes)
        assert_same(out, soft_nms(b.float(), s.float(), classes))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = torch.ops.semianchor.soft_nms(b, s, classes, "linear", 0.3, 0.5, 0.001, -1)
        assert_same(auto, out)


@needs_kernel
def test_fallback_to_reference_warns_once(monkeypatch):
    boxes, scores, classes = _nms_inputs(3, R=60)
    kernel = soft_nms(boxes, scores, classes, method="gaussian")
    monkeypatch.setattr(extension, "has_ops", lambda device=None, op=None: False)
    monkeypatch.setattr(extension, "_warned", set())
    with pytest.warns(RuntimeWarning, match="soft_nms"):
        first = soft_nms(boxes, scores, classes, method="gaussian")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = soft_nms(boxes, scores, classes, method="gaussian")
    assert_same(first, kernel)
    assert_same(second, kernel)


_B = torch.tensor([A, HALF])
_S = torch.tensor([0.9, 0.8])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: soft_nms(_B[:, :3], _S), "boxes"),
        (lambda: soft_nms(_B.tolist(), _S), "boxes"),
        (lambda: soft_nms(_B.long(), _S), "boxes"),
        (lambda: soft_nms(_B, _S[:1]), "scores"),
        (lambda: soft_nms(_B, _S.long()), "scores"),
        (lambda: soft_nms(_B, _S, torch.zeros(3, dtype=torch.long)), "classes"),
        (lambda: soft_nms(_B, _S, torch.zeros(2)), "classes"),
        (lambda: soft_nms(_B, _S, method="greedy"), "method"),
        (lambda: soft_nms(_B, _S, method="gaussian", sigma=-0.5), "sigma"),
        (lambda: soft_nms(_B, _S, sigma=0.0), "sigma"),
        (lambda: soft_nms(_B, _S, min_score=-0.1), "min_score"),
        (lambda: soft_nms(_B, _S, iou_threshold=float("nan")), "iou_threshold"),
        (lambda: soft_nms(_B, _S, max_kept=-2), "max_kept"),
        (lambda: soft_nms(_B, _S, max_kept=2.5), "max_kept"),
        (lambda: soft_nms(_B.index_fill(0, torch.tensor([1]), math.inf), _S), "boxes.*non-finite"),
        (lambda: soft_nms(_B, torch.tensor([0.9, math.nan])), "scores.*non-finite"),
    ],
)
def test_wrapper_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_reference_errors_without_the_kernel(monkeypatch):
    # the values are checked in Python when no CPU kernel runs (reference path)
    monkeypatch.setattr(extension, "has_ops", lambda device=None, op=None: False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="boxes holds non-finite"):
            soft_nms(torch.tensor([[0.0, 0.0, math.nan, 1.0]]), torch.tensor([0.5]))
        with pytest.raises(ValueError, match="scores holds non-finite"):
            soft_nms(torch.tensor([A]), torch.tensor([math.inf]))


@needs_kernel
@pytest.mark.parametrize(
    "args, match",
    [
        ((_B.double(), _S, None, "linear", 0.3, 0.5, 0.001, -1), "boxes"),
        ((_B, _S[:1], None, "linear", 0.3, 0.5, 0.001, -1), "scores"),
        ((_B, _S, torch.zeros(2, dtype=torch.int32), "linear", 0.3, 0.5, 0.001, -1), "classes"),
        ((_B, _S, None, "soft", 0.3, 0.5, 0.001, -1), "method"),
        ((_B, _S, None, "gaussian", 0.3, 0.0, 0.001, -1), "sigma"),
        ((_B, _S, None, "linear", 0.3, 0.5, -1.0, -1), "min_score"),
        ((_B, _S, None, "linear", 0.3, 0.5, 0.001, -5), "max_kept"),
        ((_B, torch.tensor([0.9, math.nan]), None, "linear", 0.3, 0.5, 0.001, -1), "scores"),
    ],
)
def test_kernel_checks_name_the_argument(args, match):
    with pytest.raises((RuntimeError, ValueError), match=match):
        torch.ops.semianchor.soft_nms(*args)


# ------------------------------------------------------------------------------------------------
@needs_cuda
def test_cuda_matches_cpu():
    for seed in range(300):
        boxes, scores, classes, kw = _random_case(seed)
        cpu = soft_nms(boxes, scores, classes, **kw)
        cuda = soft_nms(
            boxes.cuda(), scores.cuda(), None if classes is None else classes.cuda(), **kw
        )
        assert cuda[0].is_cuda
        assert_same((cuda[0].cpu(), cuda[1].cpu()), cpu)
    boxes, scores, classes = _nms_inputs(0, R=5000, num_classes=80)
    for method in METHODS:
        cpu = soft_nms(boxes, scores, classes, method=method, max_kept=300)
        cuda = soft_nms(boxes.cuda(), scores.cuda(), classes.cuda(), method=method, max_kept=300)
        assert_same((cuda[0].cpu(), cuda[1].cpu()), cpu)


@needs_cuda
def test_cuda_opcheck():
    for args in _op_samples("cuda"):
        torch.library.opcheck(torch.ops.semianchor.soft_nms, args)
