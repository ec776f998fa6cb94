"""semianchor.layers ATSS ops: kernels vs the pure-PyTorch references, edge cases, semantics."""

import pytest
import torch

from semianchor import extension
from semianchor.layers import (
    atss_assign,
    atss_assign_reference,
    atss_candidate_stats,
    atss_candidate_stats_reference,
    atss_candidates,
    atss_candidates_reference,
    infer_level_grids,
    num_candidates,
)

from .helpers import (
    STRIDES,
    grid_anchors,
    needs_kernel_on,
    peak_memory_growth,
    random_batch,
    seed_chunks,
)

needs_kernel = needs_kernel_on("cpu")
needs_cuda = needs_kernel_on("cuda")


def assert_same(out, ref, names):
    for o, r, name in zip(out, ref, names):
        assert o.shape == r.shape, name
        assert o.dtype == r.dtype, name
        if o.dtype == torch.long:
            assert torch.equal(o.cpu(), r.cpu()), f"{name} differs"
        else:
            torch.testing.assert_close(o.cpu(), r.cpu(), rtol=0, atol=1e-5, msg=name)


CAND = ("cand_idx", "cand_iou")
STATS = ("matched_gt", "matched_score", "threshold", "cand_idx")


def _random_case(seed):
    gen = torch.Generator().manual_seed(seed)
    H = int(torch.randint(16, 220, (1,), generator=gen))
    W = int(torch.randint(16, 220, (1,), generator=gen))
    A = (1, 1, 3, 9)[seed % 4]
    topk = (9, 9, 4, 10)[(seed // 4) % 4]
    anchors, levels = grid_anchors((H, W), anchors_per_location=A, offset=(0.0, 0.5)[seed % 2])
    N = int(torch.randint(1, 4, (1,), generator=gen))
    gt, counts = random_batch(gen, (H, W), N, 12, anchors=anchors)
    return anchors, levels, gt, counts, dict(topk=topk, anchors_per_location=A)


@needs_kernel
@pytest.mark.parametrize("seeds", seed_chunks(300, 6))
def test_random_batches_match_reference(seeds):
    """300 random padded batches: grid path, exhaustive path and reference agree exactly."""
    for seed in seeds:
        anchors, levels, gt, counts, kw = _random_case(seed)
        grid = infer_level_grids(anchors, levels, kw["anchors_per_location"])
        assert all(grid[7 * l + 4] > 0 for l in range(len(levels))), "grid not recognised"
        ref = atss_candidate_stats_reference(anchors, levels, gt, counts, **kw)
        assert_same(atss_candidate_stats(anchors, levels, gt, counts, **kw), ref, STATS)
        assert_same(atss_candidate_stats(anchors, levels, gt, counts, grid=None, **kw), ref, STATS)
        ref_c = atss_candidates_reference(anchors, levels, gt, counts, **kw)
        assert_same(atss_candidates(anchors, levels, gt, counts, **kw), ref_c, CAND)


@needs_kernel
def test_custom_scores_and_partial_candidates():
    """Caller-given scores (DLA) with ties across GTs, and -1 holes in cand_idx."""
    gen = torch.Generator().manual_seed(7)
    anchors, levels = grid_anchors((96, 128))
    gt, counts = random_batch(gen, (96, 128), 3, 10)
    idx, iou = atss_candidates(anchors, levels, gt, counts)
    scores = (torch.rand(idx.shape, generator=gen) * 4).round() / 4  # many exact ties
    holes = torch.rand(idx.shape, generator=gen) < 0.2
    idx_h = torch.where(holes, torch.full_like(idx, -1), idx)
    for cidx in (idx, idx_h):
        out = atss_assign(cidx, scores, anchors, gt, counts)
        ref = atss_assign_reference(cidx, scores, anchors, gt, counts)
        assert_same(out, ref, STATS[:3])
    fn = lambda cidx, ciou: 0.5 * ciou + 0.25  # noqa: E731
    out = atss_candidate_stats(anchors, levels, gt, counts, scores=fn)
    ref = atss_candidate_stats_reference(anchors, levels, gt, counts, scores=fn)
    assert_same(out, ref, STATS)


@needs_kernel
@pytest.mark.parametrize(
    "case", ["no_gt_column", "zero_counts", "one_gt", "levels_smaller_than_k", "single_level"]
)
def test_edge_cases(case):
    gen = torch.Generator().manual_seed(3)
    anchors, levels = grid_anchors((40, 72))
    kw = {}
    if case == "no_gt_column":
        gt, counts = torch.zeros(2, 0, 4), torch.zeros(2, dtype=torch.long)
    elif case == "zero_counts":
        gt, counts = torch.rand(2, 3, 4), torch.zeros(2, dtype=torch.long)
    elif case == "one_gt":
        gt, counts = torch.tensor([[[10.0, 12.0, 30.0, 33.0]]]), torch.tensor([1])
    elif case == "levels_smaller_than_k":
        anchors, levels = grid_anchors((24, 24), anchors_per_location=9)  # P5-P7: 1 location
        gt, counts = random_batch(gen, (24, 24), 2, 5)
        kw = dict(anchors_per_location=9)
        assert num_candidates(levels, 81) == 81 + 36 + 9 + 9 + 9
    else:
        anchors, levels = grid_anchors((64, 64), strides=(8,))
        gt, counts = random_batch(gen, (64, 64), 2, 5)
    ref = atss_candidate_stats_reference(anchors, levels, gt, counts, **kw)
    out = atss_candidate_stats(anchors, levels, gt, counts, **kw)
    assert_same(out, ref, STATS)
    assert out[3].shape[-1] == num_candidates(levels, 9 * kw.get("anchors_per_location", 1))


@needs_kernel
def test_2000_gts():
    gen = torch.Generator().manual_seed(11)
    anchors, levels = grid_anchors((256, 320))
    gt, counts = random_batch(gen, (256, 320), 2, 2000)
    counts[0] = 2000
    gt = torch.nn.functional.pad(gt, (0, 0, 0, max(0, 2000 - gt.shape[1])))
    gt[0] = torch.cat([gt[1, : int(counts[1])], gt[1, : 2000 - int(counts[1])]])[:2000]
    ref = atss_candidate_stats_reference(anchors, levels, gt, counts)
    out = atss_candidate_stats(anchors, levels, gt, counts)
    assert_same(out, ref, STATS)


@needs_kernel
def test_2000_gts_no_dense_intermediate():
    """Measured in a fresh process: the candidate kernel on 2000 GTs x 30k anchors grows the peak
    RSS by far less than one dense (R, M) float matrix (242 MB); the reference needs > 1 GB."""
    rec = peak_memory_growth("atss_candidate_stats", "kernel")
    assert rec["growth"] < rec["dense"] / 10, rec


@needs_kernel
def test_non_grid_anchors_use_exhaustive_path():
    gen = torch.Generator().manual_seed(5)
    anchors, levels = grid_anchors((64, 96))
    perm = torch.randperm(levels[0], generator=gen)
    anchors = anchors.clone()
    anchors[: levels[0]] = anchors[perm] + torch.rand(levels[0], 1, generator=gen)  # jittered
    grid = infer_level_grids(anchors, levels, 1)
    assert grid[4] == 0 and grid[7 + 4] > 0
    gt, counts = random_batch(gen, (64, 96), 2, 8)
    assert_same(
        atss_candidate_stats(anchors, levels, gt, counts),
        atss_candidate_stats_reference(anchors, levels, gt, counts),
        STATS,
    )


def test_detectron2_anchor_generator_is_a_grid():
    d2 = pytest.importorskip("detectron2.modeling.anchor_generator")
    gen = d2.DefaultAnchorGenerator(
        sizes=[[x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)] for x in [32, 64, 128, 256, 512]],
        aspect_ratios=[[0.5, 1.0, 2.0]],
        strides=list(STRIDES),
        offset=0.0,
    )
    feats = [torch.zeros(1, 1, -(-800 // s), -(-1333 // s)) for s in STRIDES]
    anchors = gen(feats)
    levels = [len(a) for a in anchors]
    grid = infer_level_grids(torch.cat([a.tensor for a in anchors]), levels, 9)
    for l, s in enumerate(STRIDES):
        ox, oy, sx, sy, W, H, delta = grid[7 * l : 7 * l + 7]
        assert (sx, sy, W * H * 9) == (s, s, levels[l]) and delta < 1e-3


def _official_atss(anchors, levels, gt, topk=9, A=1):
    """Transcription of sfzhang15/ATSS prepare_targets for one image (IoU without +1)."""
    from torchvision.ops import box_iou

    ious = box_iou(anchors, gt)  # (R, M)
    gt_cx, gt_cy = (gt[:, 2] + gt[:, 0]) / 2.0, (gt[:, 3] + gt[:, 1]) / 2.0
    gt_points = torch.stack((gt_cx, gt_cy), dim=1)
    a_cx, a_cy = (anchors[:, 2] + anchors[:, 0]) / 2.0, (anchors[:, 3] + anchors[:, 1]) / 2.0
    anchor_points = torch.stack((a_cx, a_cy), dim=1)
    distances = (anchor_points[:, None, :] - gt_points[None, :, :]).pow(2).sum(-1).sqrt()
    candidate_idxs, start = [], 0
    for n in levels:
        end = start + n
        k = min(topk * A, n)
        _, idx = distances[start:end, :].topk(k, dim=0, largest=False)
        candidate_idxs.append(idx + start)
        start = end
    candidate_idxs = torch.cat(candidate_idxs, dim=0)
    candidate_ious = ious[candidate_idxs, torch.arange(len(gt))]
    thr = candidate_ious.mean(0) + candidate_ious.std(0)
    is_pos = candidate_ious >= thr[None, :]
    num_gt, R = len(gt), len(anchors)
    for ng in range(num_gt):
        candidate_idxs[:, ng] += ng * R
    e_cx = a_cx.view(1, -1).expand(num_gt, R).contiguous().view(-1)
    e_cy = a_cy.view(1, -1).expand(num_gt, R).contiguous().view(-1)
    candidate_idxs = candidate_idxs.view(-1)
    l_ = e_cx[candidate_idxs].view(-1, num_gt) - gt[:, 0]
    t_ = e_cy[candidate_idxs].view(-1, num_gt) - gt[:, 1]
    r_ = gt[:, 2] - e_cx[candidate_idxs].view(-1, num_gt)
    b_ = gt[:, 3] - e_cy[candidate_idxs].view(-1, num_gt)
    is_in_gts = torch.stack([l_, t_, r_, b_], dim=1).min(dim=1)[0] > 0.01
    is_pos = is_pos & is_in_gts
    ious_inf = torch.full_like(ious, -float("inf")).t().contiguous().view(-1)
    index = candidate_idxs.view(-1)[is_pos.view(-1)]
    ious_inf[index] = ious.t().contiguous().view(-1)[index]
    ious_inf = ious_inf.view(num_gt, -1).t()
    values, indexes = ious_inf.max(dim=1)
    return torch.where(values > -float("inf"), indexes, torch.full_like(indexes, -1))


@pytest.mark.parametrize("seed", range(10))
def test_matches_official_atss_rules(seed):
    """On tie-free random GTs, our rules reproduce the official ATSS assignment."""
    gen = torch.Generator().manual_seed(100 + seed)
    anchors, levels = grid_anchors((160, 224), anchors_per_location=(1, 9)[seed % 2])
    A = (1, 9)[seed % 2]
    gt, counts = random_batch(gen, (160, 224), 1, 8, kinds="normal")
    if counts[0] == 0:
        counts[0] = 1
        gt = torch.tensor([[[10.0, 20.0, 80.0, 90.0]]])
    official = _official_atss(anchors, levels, gt[0, : int(counts[0])], A=A)
    ours = atss_candidate_stats(anchors, levels, gt, counts, anchors_per_location=A)[0][0]
    assert torch.equal(ours, official)


def test_hand_checked_rules():
    """One level, 4x4 grid of stride 10, topk 3: explicit candidates, threshold and winners."""
    anchors, levels = grid_anchors((40, 40), strides=(10,))  # centres (0..30, 0..30), boxes 80x80
    # GT 0 centred at (10, 10): its nearest centre is exact, then four at distance 10 (ties).
    gt = torch.tensor([[[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 20.0, 20.0], [11.0, 11.0, 12.0, 12.0]]])
    counts = torch.tensor([3])
    idx, iou = atss_candidates_reference(anchors, levels, gt, counts, topk=3)
    # anchor index = y*4 + x: centre (10,10) -> 5; distance-10 ties: (10,0)->1, (0,10)->4, ...
    assert idx[0, 0].tolist() == [5, 1, 4]
    assert idx[0, 2].tolist() == [5, 6, 9]  # (11.5, 11.5): (10,10), (20,10), (10,20)
    matched, score, thr, _ = atss_candidate_stats_reference(anchors, levels, gt, counts, topk=3)
    c = iou[0, 0].double()
    assert thr[0, 0].item() == pytest.approx((c.mean() + c.std()).item(), rel=1e-6)
    # GT 0 and its duplicate GT 1 claim anchor 5 with equal IoU: the lowest GT index wins.
    # GT 2 (a 1x1 box at (11..12, 11..12)) contains no anchor centre: it gets no positive.
    assert matched[0, 5].item() == 0 and (matched[0] == 1).sum() == 0
    assert (matched[0] == 2).sum() == 0
    if extension.has_ops("cpu"):
        assert_same(
            atss_candidate_stats(anchors, levels, gt, counts, topk=3),
            (matched, score, thr, idx),
            STATS,
        )


def test_single_candidate_threshold_is_the_score():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    gt = torch.tensor([[[1.0, 1.0, 9.0, 9.0]]])
    out = atss_candidate_stats_reference(anchors, [1], gt, torch.tensor([1]))
    assert out[0].tolist() == [[0]] and out[2][0, 0].item() == pytest.approx(0.64)


@needs_cuda
@pytest.mark.parametrize("seeds", seed_chunks(100, 2))
def test_cuda_matches_cpu(seeds):
    for seed in seeds:
        anchors, levels, gt, counts, kw = _random_case(seed)
        cpu = atss_candidate_stats(anchors, levels, gt, counts, **kw)
        for grid in ("auto", None):
            cuda = atss_candidate_stats(
                anchors.cuda(), levels, gt.cuda(), counts.cuda(), grid=grid, **kw
            )
            assert_same(cuda, cpu, STATS)
        scores = torch.rand(cpu[3].shape)
        a = atss_assign(cpu[3], scores, anchors, gt, counts)
        b = atss_assign(cpu[3].cuda(), scores.cuda(), anchors.cuda(), gt.cuda(), counts.cuda())
        assert_same(b, a, STATS[:3])


@needs_kernel
@pytest.mark.parametrize("seed", range(4))
def test_jittered_grid_uses_the_exact_stopping_rule(seed):
    """Anchor centres up to 0.05 stride off the ideal grid: still a grid (large delta), and the
    window search must still return the exact top-k."""
    gen = torch.Generator().manual_seed(seed)
    A = (1, 9)[seed % 2]
    anchors, levels = grid_anchors((120, 152), anchors_per_location=A)
    strides = torch.cat([torch.full((n,), 8.0 * 2**l) for l, n in enumerate(levels)])
    jitter = (torch.rand(anchors.shape[0], 2, generator=gen) - 0.5) * 0.1 * strides[:, None]
    anchors = anchors + jitter.repeat(1, 2)
    grid = infer_level_grids(anchors, levels, A)
    assert all(grid[7 * l + 4] > 0 and grid[7 * l + 6] > 0.01 for l in range(3))
    gt, counts = random_batch(gen, (120, 152), 3, 12, anchors=anchors)
    ref = atss_candidate_stats_reference(anchors, levels, gt, counts, anchors_per_location=A)
    assert_same(
        atss_candidate_stats(anchors, levels, gt, counts, anchors_per_location=A), ref, STATS
    )
    assert_same(
        atss_candidate_stats(anchors, levels, gt, counts, anchors_per_location=A, grid=grid),
        ref,
        STATS,
    )


@needs_kernel
def test_thresholds_are_bit_identical_and_ties_at_threshold_are_positive():
    """The threshold is accumulated identically (float64, candidate order) by the kernel and the
    reference, so `score >= threshold` never flips between them; a GT whose candidates all score
    the same has std 0 and all its inside candidates positive."""
    for seed in range(40):
        anchors, levels, gt, counts, kw = _random_case(seed)
        idx, iou = atss_candidates(anchors, levels, gt, counts, **kw)
        scores = (
            iou * 0.731
            + torch.rand(iou.shape, generator=torch.Generator().manual_seed(seed)) * 1e-3
        )
        k = atss_assign(idx, scores, anchors, gt, counts)
        r = atss_assign_reference(idx, scores, anchors, gt, counts)
        assert torch.equal(k[2], r[2]) and torch.equal(k[0], r[0]) and torch.equal(k[1], r[1])
    anchors, levels = grid_anchors((64, 64), strides=(8,))
    gt, counts = torch.tensor([[[0.0, 0.0, 64.0, 64.0]]]), torch.tensor([1])
    idx, _ = atss_candidates(anchors, levels, gt, counts)
    const = torch.full(idx.shape, 0.3)
    matched, score, thr = atss_assign(idx, const, anchors, gt, counts)
    assert thr.item() == pytest.approx(0.3) and (matched[0, idx[0, 0]] == 0).all()
    assert torch.equal(matched, atss_assign_reference(idx, const, anchors, gt, counts)[0])
