"""Operator registration: opcheck, fake kernels, autocast, fallback to the references, errors."""

import warnings

import pytest
import torch

from semianchor import extension
from semianchor.layers import (
    _selfcheck,
    atss_assign,
    atss_candidate_stats,
    atss_candidate_stats_reference,
    atss_candidates,
    infer_level_grids,
    iou_after_regression,
    iou_after_regression_reference,
    max_iou_match,
    soft_nms,
    topn_iou_match,
)

from .helpers import grid_anchors, needs_kernel_on, random_batch

needs_kernel = needs_kernel_on("cpu")


def _inputs(device="cpu"):
    gen = torch.Generator().manual_seed(0)
    anchors, levels = grid_anchors((48, 64))
    gt, counts = random_batch(gen, (48, 64), 2, 5)
    gt = torch.nan_to_num(gt)
    reg = torch.randn(2, anchors.shape[0], 4, generator=gen) * 0.3
    to = lambda t: t.to(device)  # noqa: E731
    return to(anchors), levels, to(gt), to(counts), to(reg)


def _op_samples(device="cpu"):
    anchors, levels, gt, counts, reg = _inputs(device)
    grid = infer_level_grids(anchors, levels, 1)
    idx, iou = torch.ops.semianchor.atss_candidates(anchors, gt, counts, levels, 9, 1, grid)
    matched = torch.where(idx[:, :1, 0] >= 0, torch.zeros_like(reg[..., 0], dtype=torch.long), -1)
    return {
        "iou_after_regression": [
            (anchors, reg, gt, counts, None, "deltas", [1.0, 1.0, 1.0, 1.0], 4.135, None),
            (
                anchors,
                reg,
                gt,
                counts,
                matched,
                "ltrb",
                [1.0] * 4,
                4.135,
                torch.ones(anchors.shape[0], device=device),
            ),
        ],
        "atss_candidates": [
            (anchors, gt, counts, levels, 9, 1, grid),
            (anchors, gt, counts, levels, 9, 1, []),
            (anchors, gt, counts, levels, 4, 1, [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0] * len(levels)),
        ],
        "atss_assign": [(idx, iou, anchors, gt, counts, 0.01)],
        "max_iou_match": [
            (anchors, gt, counts, levels, [0.4, 0.5], [0, -1, 1], True, True),
            (anchors[None].repeat(2, 1, 1), gt, counts, [], [0.5], [0, 1], False, False),
        ],
        "topn_iou_match": [
            (anchors, gt, counts, levels, 9, True),
            (anchors[None].repeat(2, 1, 1), gt, counts, [], 3, False),
        ],
        "soft_nms": [
            (anchors[:50], reg[0, :50, 0].sigmoid(), None, "linear", 0.3, 0.5, 0.001, -1),
            (
                anchors[:50],
                reg[0, :50, 1].sigmoid(),
                matched[0, :50] + 1,
                "hard",
                0.5,
                0.5,
                0.01,
                9,
            ),
        ],
    }


# Ops whose output size depends on the data: their fake kernels return unbacked sizes (checked in
# their own test modules), so test_fake_kernels_shapes cannot compare them with concrete shapes.
DATA_DEPENDENT_SIZE_OPS = ("soft_nms",)


@needs_kernel
@pytest.mark.parametrize("name", extension.OP_NAMES)
def test_opcheck(name):
    op = getattr(torch.ops.semianchor, name)
    for args in _op_samples()[name]:
        torch.library.opcheck(op, args)


@needs_kernel
def test_fake_kernels_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode()
    for name, cases in _op_samples().items():
        if name in DATA_DEPENDENT_SIZE_OPS:
            continue
        for args in cases:
            real = getattr(torch.ops.semianchor, name)(*args)
            fargs = [mode.from_tensor(a) if torch.is_tensor(a) else a for a in args]
            with mode:
                fake = getattr(torch.ops.semianchor, name)(*fargs)
            assert [(f.shape, f.dtype) for f in fake] == [(r.shape, r.dtype) for r in real]


@needs_kernel
def test_half_inputs_computed_in_float32():
    anchors, levels, gt, counts, reg = _inputs()
    for dtype in (torch.float16, torch.bfloat16):
        a, g, r = anchors.to(dtype), gt.to(dtype), reg.to(dtype)
        out = iou_after_regression(a, r, g, counts)
        ref = iou_after_regression(a.float(), r.float(), g.float(), counts)
        assert all(o.dtype in (torch.float32, torch.long) for o in out)
        for o, x in zip(out, ref):
            assert torch.equal(o, x)
        s = atss_candidate_stats(a, levels, g, counts)
        assert all(
            torch.equal(x, y)
            for x, y in zip(s, atss_candidate_stats(a.float(), levels, g.float(), counts))
        )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = torch.ops.semianchor.iou_after_regression(
            anchors.bfloat16(),
            reg.bfloat16(),
            gt.bfloat16(),
            counts,
            None,
            "deltas",
            [1.0] * 4,
            4.0,
            None,
        )
    assert out[1].dtype == torch.float32


@needs_kernel
def test_fallback_to_reference_warns_once(monkeypatch):
    anchors, levels, gt, counts, reg = _inputs()
    kernel_stats = atss_candidate_stats(anchors, levels, gt, counts)
    kernel_iou = iou_after_regression(anchors, reg, gt, counts)
    monkeypatch.setattr(extension, "has_ops", lambda device=None, op=None: False)
    monkeypatch.setattr(extension, "_warned", set())
    with pytest.warns(RuntimeWarning, match="reference"):
        stats = atss_candidate_stats(anchors, levels, gt, counts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats2 = atss_candidate_stats(anchors, levels, gt, counts)  # no second warning
    with pytest.warns(RuntimeWarning, match="iou_after_regression"):
        iou = iou_after_regression(anchors, reg, gt, counts)
    for a, b, c in zip(stats, stats2, kernel_stats):
        assert torch.equal(a, c) and torch.equal(b, c)
    for a, b in zip(iou, kernel_iou):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_reference_runs_without_the_extension():
    anchors, levels, gt, counts, reg = _inputs()
    out = atss_candidate_stats_reference(anchors, levels, gt, counts)
    assert out[0].shape == (2, anchors.shape[0])
    assert iou_after_regression_reference(anchors, reg, gt, counts)[1].shape == (
        2,
        anchors.shape[0],
    )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda a, l, g, c, r: atss_candidates(a, l[:-1], g, c), "num_anchors_per_level"),
        (lambda a, l, g, c, r: atss_candidates(a[:, :3], l, g, c), "anchors"),
        (lambda a, l, g, c, r: atss_candidates(a, l, g[0], c), "gt_boxes"),
        (lambda a, l, g, c, r: atss_candidates(a, l, g, c[:1]), "gt_counts"),
        (lambda a, l, g, c, r: atss_candidates(a, l, g, c + 100), "gt_counts"),
        (lambda a, l, g, c, r: atss_candidates(a, l, g, c.float()), "gt_counts"),
        (lambda a, l, g, c, r: atss_candidates(a, l, g, c, topk=0), "topk"),
        (lambda a, l, g, c, r: atss_candidates(a, l, g, c, grid=[0.0] * 3), "grid"),
        (lambda a, l, g, c, r: atss_candidates(a, l, g, c, grid="exhaustive"), "grid"),
        (
            lambda a, l, g, c, r: atss_candidates(
                a, l, g.index_fill(1, torch.tensor([0]), float("inf")), c.clamp(min=1)
            ),
            "non-finite",
        ),
        (lambda a, l, g, c, r: atss_candidates(a.int(), l, g, c), "anchors"),
        (
            lambda a, l, g, c, r: atss_assign(
                torch.zeros(2, 1, 3, dtype=torch.long), torch.zeros(2, 1, 3), a, g, c
            ),
            "cand_idx",
        ),
        (
            lambda a, l, g, c, r: atss_assign(
                torch.full((2, g.shape[1], 3), 10**9), torch.zeros(2, g.shape[1], 3), a, g, c
            ),
            "cand_idx",
        ),
        (
            lambda a, l, g, c, r: atss_assign(
                torch.zeros(2, g.shape[1], 3, dtype=torch.long),
                torch.zeros(2, g.shape[1], 2),
                a,
                g,
                c,
            ),
            "cand_scores",
        ),
        (
            lambda a, l, g, c, r: atss_assign(
                torch.zeros(2, g.shape[1], 3, dtype=torch.long),
                torch.zeros(2, g.shape[1], 3),
                a,
                g,
                c,
                num_anchors=5,
            ),
            "num_anchors",
        ),
        (lambda a, l, g, c, r: iou_after_regression(a, r[:, :-1], g, c), "anchors"),
        (lambda a, l, g, c, r: iou_after_regression(a, r, g, c, box_coder="xywh"), "box_coder"),
        (lambda a, l, g, c, r: iou_after_regression(a, r, g, c, weights=(1, 0, 1, 1)), "weights"),
        (
            lambda a, l, g, c, r: iou_after_regression(a, r, g, c, torch.full(r.shape[:2], 99)),
            "matched_gt",
        ),
        (
            lambda a, l, g, c, r: iou_after_regression(
                a, r, g, c, ltrb_scale=torch.ones(3), box_coder="ltrb"
            ),
            "ltrb_scale",
        ),
        (lambda a, l, g, c, r: iou_after_regression(a, r, g[:1], c[:1]), "gt_boxes"),
    ],
)
def test_wrapper_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(*_inputs())


@needs_kernel
@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda a, l, g, c, r: torch.ops.semianchor.atss_candidates(a, g, c, l[:-1], 9, 1, []),
            "num_anchors_per_level",
        ),
        (
            lambda a, l, g, c, r: torch.ops.semianchor.atss_candidates(a, g, c.int(), l, 9, 1, []),
            "gt_counts",
        ),
        (
            lambda a, l, g, c, r: torch.ops.semianchor.atss_candidates(
                a.double(), g, c, l, 9, 1, []
            ),
            "anchors",
        ),
        (
            lambda a, l, g, c, r: torch.ops.semianchor.atss_candidates(a, g, c, l, 9, 1, [1.0]),
            "grid",
        ),
        (
            lambda a, l, g, c, r: torch.ops.semianchor.atss_candidates(a, g, c, l, 9, 0, []),
            "anchors_per_location",
        ),
        (
            lambda a, l, g, c, r: torch.ops.semianchor.iou_after_regression(
                a, r, g, c, None, "xyxy", [1.0] * 4, 4.0, None
            ),
            "box_coder",
        ),
        (
            lambda a, l, g, c, r: torch.ops.semianchor.iou_after_regression(
                a, r, g, c, None, "deltas", [1.0] * 3, 4.0, None
            ),
            "weights",
        ),
        (
            lambda a, l, g, c, r: torch.ops.semianchor.atss_assign(
                torch.zeros(2, 1, 3, dtype=torch.long), torch.zeros(2, 1, 3), a, g, c, 0.01
            ),
            "cand_idx",
        ),
    ],
)
def test_kernel_checks_name_the_argument(call, match):
    with pytest.raises(RuntimeError, match=match):
        call(*_inputs())


# a sys.meta_path finder that makes `import semianchor._C` fail, as a missing build would
_BLOCK_C = """
import sys
class _BlockC:
    def find_spec(self, name, path=None, target=None):
        if name == "semianchor._C":
            raise ImportError("semianchor._C blocked by the test")
sys.meta_path.insert(0, _BlockC())
"""


def _run_blocked(code, require):
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    env.pop(extension.REQUIRE_ENV, None)
    if require:
        env[extension.REQUIRE_ENV] = "1"
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_C + code],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_required_extension_that_cannot_load_is_an_error():
    code = "from semianchor import extension\nprint('loaded:', extension.load_ops())\n"
    relaxed = _run_blocked(code, require=False)
    assert relaxed.returncode == 0 and "loaded: False" in relaxed.stdout, relaxed.stderr[-2000:]
    strict = _run_blocked(code, require=True)
    assert strict.returncode != 0, strict.stdout
    assert "SEMIANCHOR_REQUIRE_EXT is set but semianchor._C cannot be loaded" in strict.stderr
    assert "blocked by the test" in strict.stderr


def test_required_extension_turns_kernel_test_skips_into_failures():
    code = (
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
        "'tests/layers/test_iou_after_regression.py', '-k', 'test_semantics']))\n"
    )
    relaxed = _run_blocked(code, require=False)
    assert relaxed.returncode == 0 and "1 skipped" in relaxed.stdout, relaxed.stdout[-2000:]
    strict = _run_blocked(code, require=True)
    assert strict.returncode != 0, strict.stdout[-2000:]
    assert "SEMIANCHOR_REQUIRE_EXT is set but semianchor._C cannot be loaded" in strict.stdout


def _bad_values():
    """Calls whose inputs have the right shapes but wrong values, each with the argument named."""
    anchors, levels, gt, counts, reg = _inputs()
    n_gt = gt.shape[1]
    inf_gt = gt.index_fill(1, torch.tensor([0]), float("inf"))
    inf_anchors = anchors.index_fill(0, torch.tensor([3]), float("nan"))
    idx, iou = atss_candidates(anchors, levels, gt, counts)
    used = idx[0, 0, 0].item() >= 0 and counts[0] > 0
    assert used  # so the non-finite score below is read
    nan_iou = iou.clone()
    nan_iou[0, 0, 0] = float("nan")
    big_idx = idx.clone()
    big_idx[1, 0, 2] = anchors.shape[0] + 7
    bad_matched = torch.zeros(reg.shape[:2], dtype=torch.long)
    bad_matched[1, 5] = n_gt + 3
    boxes, scores = anchors[:20], reg[0, :20, 0].sigmoid()
    return {
        "atss_candidates counts": lambda: atss_candidates(anchors, levels, gt, counts + n_gt + 1),
        "atss_candidates gt": lambda: atss_candidates(anchors, levels, inf_gt, counts.clamp(min=1)),
        "atss_candidates anchors": lambda: atss_candidates(inf_anchors, levels, gt, counts),
        "atss_assign cand_idx": lambda: atss_assign(big_idx, iou, anchors, gt, counts),
        "atss_assign cand_scores": lambda: atss_assign(idx, nan_iou, anchors, gt, counts),
        "iou_after_regression matched_gt": lambda: iou_after_regression(
            anchors, reg, gt, counts, bad_matched
        ),
        "iou_after_regression anchors": lambda: iou_after_regression(inf_anchors, reg, gt, counts),
        "max_iou_match anchors": lambda: max_iou_match(inf_anchors, gt, counts, levels),
        "max_iou_match counts": lambda: max_iou_match(
            anchors, gt, counts.index_fill(0, torch.tensor([1]), -1), levels
        ),
        "topn_iou_match gt": lambda: topn_iou_match(anchors, inf_gt, counts.clamp(min=1), 3),
        "soft_nms boxes": lambda: soft_nms(
            boxes.index_fill(0, torch.tensor([2]), -float("inf")), scores
        ),
        "soft_nms scores": lambda: soft_nms(
            boxes, scores.index_fill(0, torch.tensor([4]), float("nan"))
        ),
    }


@needs_kernel
@pytest.mark.parametrize("case", sorted(_bad_values()))
def test_kernel_and_reference_reject_bad_values_with_the_same_message(case, monkeypatch):
    """The CPU kernels check the values in C++, the wrappers check them in Python for every other
    path: the user sees the same ValueError either way."""
    call = _bad_values()[case]
    monkeypatch.delenv(_selfcheck.KERNELS_ENV, raising=False)
    with pytest.raises(ValueError) as kernel:
        call()
    monkeypatch.setenv(_selfcheck.KERNELS_ENV, "reference")
    with pytest.raises(ValueError) as reference:
        call()
    assert str(kernel.value) == str(reference.value)
    assert case.split()[1] in str(reference.value)
