"""semianchor.layers.iou_after_regression / decode_boxes: kernels vs the reference, detectron2."""

import math

import pytest
import torch

from semianchor.layers import decode_boxes, iou_after_regression, iou_after_regression_reference

from .helpers import grid_anchors, needs_kernel_on, peak_memory_growth, random_batch, seed_chunks

needs_kernel = needs_kernel_on("cpu")
needs_cuda = needs_kernel_on("cuda")
NAMES = ("pred_boxes", "iou", "giou", "gt_index")


def assert_same(out, ref):
    for o, r, name in zip(out, ref, NAMES):
        assert o.shape == r.shape and o.dtype == r.dtype, name
        if o.dtype == torch.long:
            assert torch.equal(o.cpu(), r.cpu()), f"{name} differs"
        else:
            torch.testing.assert_close(
                o.cpu(), r.cpu(), rtol=1e-5, atol=1e-5, equal_nan=True, msg=name
            )


def _case(seed):
    gen = torch.Generator().manual_seed(seed)
    H, W = (int(v) for v in torch.randint(16, 160, (2,), generator=gen))
    A = (1, 9)[seed % 2]
    anchors, levels = grid_anchors((H, W), anchors_per_location=A)
    N = int(torch.randint(1, 4, (1,), generator=gen))
    gt, counts = random_batch(gen, (H, W), N, 10, anchors=anchors)
    R = anchors.shape[0]
    coder = ("deltas", "ltrb")[(seed // 2) % 2]
    kw = dict(box_coder=coder)
    if coder == "deltas":
        reg = torch.randn(N, R, 4, generator=gen) * 0.7
        reg[..., 2:] *= 3  # exercise the scale clamp
        if seed % 3 == 0:
            kw["weights"] = (10.0, 10.0, 5.0, 5.0)
    else:
        reg = torch.rand(N, R, 4, generator=gen) * 6 - 1  # some negative distances
        strides = torch.cat([torch.full((n,), 8.0 * 2**l) for l, n in enumerate(levels)])
        if seed % 3 == 0:
            kw["ltrb_scale"] = strides
        if seed % 4 == 1:  # FCOS points: zero-size anchors
            c = (anchors[:, :2] + anchors[:, 2:]) / 2
            anchors = torch.cat([c, c], dim=1)
    if seed % 5 == 0:  # non-finite predictions
        reg[0, ::7, 0] = float("nan")
        reg[0, 3::11, 2] = float("inf")
    if seed % 6 == 0:  # per-image anchors
        anchors = anchors[None].expand(N, R, 4) + torch.randn(N, R, 4, generator=gen)
    matched = torch.randint(-1, 1000, (N, R), generator=gen) % (counts[:, None] + 1) - 1
    return anchors, reg, gt, counts, matched, kw


@needs_kernel
@pytest.mark.parametrize("seeds", seed_chunks(200, 4))
def test_random_batches_match_reference(seeds):
    for seed in seeds:
        anchors, reg, gt, counts, matched, kw = _case(seed)
        for mg in (None, matched):
            out = iou_after_regression(anchors, reg, gt, counts, mg, **kw)
            ref = iou_after_regression_reference(anchors, reg, gt, counts, mg, **kw)
            assert_same(out, ref)
            assert torch.isfinite(out[1]).all() and torch.isfinite(out[2]).all()
            assert ((out[1] >= 0) & (out[1] <= 1)).all() and ((out[2] >= -1) & (out[2] <= 1)).all()


@needs_kernel
def test_semantics():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0], [20.0, 20.0, 30.0, 30.0]])
    reg = torch.zeros(2, 3, 4)
    reg[1, 2, 0] = float("nan")
    gt = torch.tensor(
        [[[0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 10.0]], [[0.0] * 4] * 3]
    )
    gt[1, 0] = torch.tensor([100.0, 100.0, 110.0, 110.0])
    counts = torch.tensor([2, 1])
    for fn in (iou_after_regression, iou_after_regression_reference):
        pred, iou, giou, idx = fn(anchors, reg, gt, counts)
        # duplicate GTs 0 and 1: lowest index; GT 2 is padding and never used
        assert idx[0].tolist() == [0, 0, 0] and iou[0, 0].item() == pytest.approx(0.5)
        assert iou[0, 1].item() == 0.0 and not torch.isnan(giou).any()  # zero-area anchor
        assert iou[1, 2].item() == 0 and giou[1, 2].item() == -1  # non-finite prediction
        assert giou[1, 0].item() == pytest.approx(-(12100 - 200) / 12100)
        matched = torch.tensor([[1, -1, 0], [-1, 0, 0]])
        _, iou, giou, idx = fn(anchors, reg, gt, counts, matched)
        assert idx.tolist() == matched.tolist()
        assert iou[0, 1].item() == 0 and giou[0, 1].item() == -1 and giou[1, 0].item() == -1
        _, iou, giou, idx = fn(anchors, reg, gt, torch.tensor([0, 0]))
        assert (idx == -1).all() and (iou == 0).all() and (giou == -1).all()


def test_decode_matches_detectron2():
    b2b = pytest.importorskip("detectron2.modeling.box_regression")
    gen = torch.Generator().manual_seed(0)
    anchors, _ = grid_anchors((64, 64), anchors_per_location=9)
    deltas = torch.randn(2, anchors.shape[0], 4, generator=gen) * 2
    weights = (10.0, 10.0, 5.0, 5.0)
    t = b2b.Box2BoxTransform(weights=weights, scale_clamp=math.log(1000 / 16))
    ours = decode_boxes(anchors, deltas, weights=weights)
    for n in range(2):
        torch.testing.assert_close(
            ours[n], t.apply_deltas(deltas[n], anchors), rtol=1e-6, atol=1e-4
        )
    x = deltas.clone().requires_grad_()
    decode_boxes(anchors, x).sum().backward()
    assert torch.isfinite(x.grad).all()


@needs_kernel
def test_large_m_matches_reference():
    gen = torch.Generator().manual_seed(1)
    anchors, _ = grid_anchors((400, 400))
    gt, counts = random_batch(gen, (400, 400), 1, 1000, kinds="normal")
    reg = torch.randn(1, anchors.shape[0], 4, generator=gen) * 0.1
    out = iou_after_regression(anchors, reg, gt, counts)
    ref = iou_after_regression_reference(anchors, reg, gt, counts)
    assert_same(out, ref)


# an (R, M) float matrix for 2000 GTs x 30k anchors is 242 MB; the kernel's outputs are (R, 4)
DENSE_FRACTION = 10


def test_memory_probe_sees_the_dense_reference():
    """The probe can fail: the dense reference's peak growth exceeds the bound (and R x M x 4)."""
    rec = peak_memory_growth("iou_after_regression", "reference")
    assert rec["growth"] > rec["dense"], rec


@needs_kernel
def test_large_m_no_dense_intermediate():
    """Measured in a fresh process: a 2000-GT call grows the peak RSS by far less than one dense
    (R, M) float matrix."""
    rec = peak_memory_growth("iou_after_regression", "kernel")
    assert rec["growth"] < rec["dense"] / DENSE_FRACTION, rec


@needs_cuda
def test_cuda_matches_cpu():
    for seed in range(60):
        anchors, reg, gt, counts, matched, kw = _case(seed)
        kw_cuda = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in kw.items()}
        for mg in (None, matched):
            cpu = iou_after_regression(anchors, reg, gt, counts, mg, **kw)
            cuda = iou_after_regression(
                anchors.cuda(),
                reg.cuda(),
                gt.cuda(),
                counts.cuda(),
                None if mg is None else mg.cuda(),
                **kw_cuda,
            )
            assert_same(cuda, cpu)
