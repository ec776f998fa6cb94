"""Label assigners: hand-computed cases (in the style of Detectron2's test_matcher) and random
cases against an independent, loop-based transcription of ATSS Algorithm 1."""

import math

import pytest
import torch

from semianchor.modeling.assigners import (
    AssignInputs,
    ATSSAssigner,
    MaxIoUAssigner,
    StagedAssigner,
    TargetSet,
    pad_gt_instances,
)

K = 3  # classes


def grid_anchors(stride, size, h, w):
    """Detectron2 order (offset 0): centres (x*stride, y*stride), x fastest."""
    ys, xs = torch.meshgrid(torch.arange(h) * stride, torch.arange(w) * stride, indexing="ij")
    c = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float()
    return torch.cat([c - size / 2, c + size / 2], 1)


def make_inputs(levels, gts, classes=None):
    """levels: list of (stride, size, h, w); gts: list (per image) of lists of boxes."""
    anchors = [grid_anchors(*lv) for lv in levels]
    nums = [len(a) for a in anchors]
    anchors = torch.cat(anchors)
    strides = torch.cat([torch.full((n,), float(lv[0])) for n, lv in zip(nums, levels)])
    N = len(gts)
    M = max([len(g) for g in gts] + [1])
    boxes = torch.zeros(N, M, 4)
    cls = torch.zeros(N, M, dtype=torch.long)
    for i, g in enumerate(gts):
        if g:
            boxes[i, : len(g)] = torch.tensor(g, dtype=torch.float32)
            cls[i, : len(g)] = torch.tensor(
                classes[i] if classes else [j % K for j in range(len(g))]
            )
    counts = torch.tensor([len(g) for g in gts])
    return AssignInputs(
        anchors=anchors,
        num_anchors_per_level=nums,
        anchor_strides=strides,
        anchors_per_location=1,
        gt_boxes=boxes,
        gt_classes=cls,
        gt_counts=counts,
        num_classes=K,
    )


# One 3x3 level, stride 10, anchors 10x10: anchor i has centre ((i % 3) * 10, (i // 3) * 10).
LEVEL = [(10, 10, 3, 3)]


def test_atss_single_gt_hand_computed():
    # GT centre (10, 10); k = 3 -> candidates: anchor 4 (distance 0) and, of the four anchors at
    # distance 10 (1, 3, 5, 7), the two lowest indices 1 and 3.
    # IoU(anchor 4 = [5,5,15,15], GT) = 100 / 196 = 0.5102; anchors 1, 3: 20 / 276 = 0.0725.
    # threshold = mean + std (Bessel) = 0.2184 + 0.2527 = 0.4711 -> only anchor 4 positive.
    inputs = make_inputs(LEVEL, [[[3, 3, 17, 17]]], [[2]])
    res = ATSSAssigner(topk=3)(inputs)
    expected = torch.full((1, 9), -1)
    expected[0, 4] = 0
    assert torch.equal(res.matched_gt, expected)
    assert res.labels[0, 4] == 2 and (res.labels[0, torch.arange(9) != 4] == K).all()
    ious = torch.tensor([100 / 196, 20 / 276, 20 / 276], dtype=torch.float64)
    thr = ious.mean() + ious.std()
    assert res.extras["threshold"][0, 0].item() == pytest.approx(thr.item(), abs=1e-5)
    # "score": the IoU of each positive with its GT, 0 elsewhere
    assert res.extras["score"][0, 4].item() == pytest.approx(100 / 196, rel=1e-6)
    assert (res.extras["score"][0, torch.arange(9) != 4] == 0).all()
    assert sorted(res.extras["candidates"][0, 0].tolist()) == [1, 3, 4]


def test_atss_two_gts_compete_for_an_anchor():
    # GT a = [3,3,17,17]: anchor 4 positive with IoU 0.5102 (see above).
    # GT b = [5,5,16,16]: candidates 4, 5, 7; IoU(4) = 100/121 = 0.826 >= its threshold 0.756.
    # Anchor 4 is claimed by both -> b (higher IoU), whatever the GT order.
    for order in ([[3, 3, 17, 17], [5, 5, 16, 16]], [[5, 5, 16, 16], [3, 3, 17, 17]]):
        inputs = make_inputs(LEVEL, [order], [[0, 1]])
        res = ATSSAssigner(topk=3)(inputs)
        b_index = order.index([5, 5, 16, 16])
        assert res.matched_gt[0, 4] == b_index
        assert res.labels[0, 4] == [0, 1][b_index]
        assert (res.matched_gt[0, torch.arange(9) != 4] == -1).all()


def test_atss_duplicate_gts_tie_to_lowest_index():
    inputs = make_inputs(LEVEL, [[[5, 5, 16, 16], [5, 5, 16, 16]]], [[1, 2]])
    res = ATSSAssigner(topk=3)(inputs)
    assert res.matched_gt[0, 4] == 0 and res.labels[0, 4] == 1


def test_atss_gt_on_several_levels():
    # Level 1: 4x4 grid stride 8 anchors 16; level 2: 2x2 grid stride 16 anchors 32.
    # GT [0, 0, 24, 24] (centre (12, 12)), k = 2: candidates on both levels (4 in all).
    # IoUs: level 1 idx 5, 6: 256/576 = 0.444 each; level 2 idx 3 ([0,0,32,32]): 576/1024 =
    # 0.5625, idx 1 ([0,-16,32,16]): 384/1216 = 0.316 -> threshold 0.442 + 0.101 = 0.542 ->
    # only the level-2 anchor 16 + 3 is positive: the level is chosen by the statistics.
    levels = [(8, 16, 4, 4), (16, 32, 2, 2)]
    inputs = make_inputs(levels, [[[0, 0, 24, 24]]])
    res = ATSSAssigner(topk=2)(inputs)
    cands = res.extras["candidates"][0, 0].tolist()
    # level 1: centres (8, 8) idx 5 and (16, 8)/(8, 16)/(16, 16) at distance >= 5.66 -> idx 5
    # (d=5.66), then idx 6 (16,8) d=5.66 tie -> lower index 5 first then 6.
    assert cands[:2] == [5, 6]
    # level 2: centres (0,0),(16,0),(0,16),(16,16) -> (16,16) idx 3 (d=5.66) then (16,0) idx 1.
    assert cands[2:] == [16 + 3, 16 + 1]
    ious = []
    gt = torch.tensor([[0.0, 0, 24, 24]])
    from detectron2.structures import Boxes, pairwise_iou

    ious = pairwise_iou(Boxes(gt), Boxes(inputs.anchors[cands]))[0].double()
    thr = ious.mean() + ious.std()
    pos = [c for c, v in zip(cands, ious) if v >= thr]
    assert pos == [19]
    assert res.matched_gt[0].eq(0).nonzero()[:, 0].tolist() == [19]


@pytest.mark.parametrize("center_eps, positive", [(0.01, True), (0.4, True), (0.6, False)])
def test_atss_center_eps_is_the_inside_margin(center_eps, positive):
    # GT [9.5,3,17,17], centre (13.25, 10), k = 3: candidates 4, 5, 1 with IoUs 55/150, 20/185,
    # 11/194 -> threshold 0.343; anchor 4 (IoU 0.367) has its centre (10, 10) 0.5 px inside the
    # GT's left side: positive iff 0.5 > center_eps.
    inputs = make_inputs(LEVEL, [[[9.5, 3, 17, 17]]])
    res = ATSSAssigner(topk=3, center_eps=center_eps)(inputs)
    ious = torch.tensor([55 / 150, 20 / 185, 11 / 194], dtype=torch.float64)
    assert res.extras["threshold"][0, 0].item() == pytest.approx(
        (ious.mean() + ious.std()).item(), abs=1e-5
    )
    assert res.matched_gt[0].tolist() == [-1] * 4 + [0 if positive else -1] + [-1] * 4


def test_atss_takes_k_times_a_candidates_per_level():
    # Two anchors per location (10 x 10 and 14 x 14, contiguous as in Detectron2), k = 2: the
    # k * A = 4 nearest, i.e. both anchors of location 4 (indices 8, 9) and of location 1 (2, 3).
    # IoUs 100/196, 1, 20/276, 56/336 -> threshold 0.857: only anchor 9 (the GT itself) is
    # positive (with 2 candidates, mean + std of two values exceeds both: no positive).
    inputs = make_inputs(LEVEL, [[[3, 3, 17, 17]]])
    inputs.anchors = torch.stack([grid_anchors(10, 10, 3, 3), grid_anchors(10, 14, 3, 3)], 1)
    inputs.anchors = inputs.anchors.reshape(-1, 4)
    inputs.num_anchors_per_level, inputs.anchors_per_location = [18], 2
    inputs.anchor_strides = torch.full((18,), 10.0)
    res = ATSSAssigner(topk=2)(inputs)
    assert res.extras["candidates"][0, 0].tolist() == [8, 9, 2, 3]
    ious = torch.tensor([100 / 196, 1.0, 20 / 276, 56 / 336], dtype=torch.float64)
    assert res.extras["threshold"][0, 0].item() == pytest.approx(
        (ious.mean() + ious.std()).item(), abs=1e-5
    )
    assert res.matched_gt[0].eq(0).nonzero()[:, 0].tolist() == [9]


def test_atss_needs_one_anchor_count_per_location():
    inputs = make_inputs([(10, 10, 3, 3), (20, 20, 2, 2)], [[[3, 3, 17, 17]]])
    inputs.anchors_per_location = [1, 2]
    msg = (
        r"^ATSSAssigner needs the same number of anchors per location on every level, got \[1, 2\]$"
    )
    with pytest.raises(ValueError, match=msg):
        ATSSAssigner()(inputs)


def test_atss_topk_one_is_the_nearest_anchor_and_zero_is_refused():
    res = ATSSAssigner(topk=1)(make_inputs(LEVEL, [[[3, 3, 17, 17]]]))
    assert res.extras["candidates"][0, 0].tolist() == [4]
    with pytest.raises(ValueError, match=r"^topk must be >= 1, got 0$"):
        ATSSAssigner(topk=0)


def test_atss_tiny_gt_gets_no_positive():
    # GT [12,12,14,14]: its nearest anchor centre (10, 10) lies outside it -> no positive.
    inputs = make_inputs(LEVEL, [[[12, 12, 14, 14]]])
    res = ATSSAssigner(topk=3)(inputs)
    assert (res.matched_gt == -1).all() and (res.labels == K).all()


def test_atss_empty_gt_all_background():
    inputs = make_inputs(LEVEL, [[], [[3, 3, 17, 17]]])
    res = ATSSAssigner(topk=3)(inputs)
    assert (res.labels[0] == K).all() and (res.matched_gt[0] == -1).all()
    assert res.matched_gt[1, 4] == 0


# ---------------------------------------------------------------- Algorithm 1, transcribed
def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def atss_algorithm1(anchors, nums, gts, k, eps=0.01):
    """Paper's Algorithm 1 with the official code's details, one GT at a time, plain Python."""
    anchors = anchors.double().tolist()
    R = len(anchors)
    best = [(-1.0, -1)] * R  # (IoU, gt)
    for g, box in enumerate(gts):
        gcx, gcy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        cands, start = [], 0
        for n in nums:
            dists = []
            for r in range(start, start + n):
                a = anchors[r]
                acx, acy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
                dists.append((math.hypot(acx - gcx, acy - gcy), r))
            dists.sort()
            cands += [r for _, r in dists[: min(k, n)]]
            start += n
        ious = [_iou(anchors[r], box) for r in cands]
        mean = sum(ious) / len(ious)
        std = (
            math.sqrt(sum((v - mean) ** 2 for v in ious) / (len(ious) - 1))
            if len(ious) > 1
            else 0.0
        )
        thr = mean + std
        for r, v in zip(cands, ious):
            a = anchors[r]
            acx, acy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
            inside = min(acx - box[0], acy - box[1], box[2] - acx, box[3] - acy) > eps
            if v >= thr and inside and v > best[r][0]:
                best[r] = (v, g)
    return torch.tensor([b[1] for b in best])


@pytest.mark.parametrize("seed", range(20))
def test_atss_matches_algorithm1_on_random_images(seed):
    g = torch.Generator().manual_seed(seed)
    levels = [(8, 32, 8, 8), (16, 64, 4, 4), (32, 128, 2, 2)]
    N = 2
    gts = []
    for _ in range(N):
        m = int(torch.randint(0, 12, (1,), generator=g))
        xy = torch.rand(m, 2, generator=g) * 60
        wh = torch.rand(m, 2, generator=g) * 50 + 1
        gts.append(torch.cat([xy, xy + wh], 1).round().tolist())  # integer coords -> ties happen
    inputs = make_inputs(levels, gts)
    res = ATSSAssigner(topk=4)(inputs)
    for i in range(N):
        expected = atss_algorithm1(inputs.anchors, inputs.num_anchors_per_level, gts[i], 4)
        assert torch.equal(res.matched_gt[i], expected), (seed, i)


def test_max_iou_assigner_retinanet_rule():
    inputs = make_inputs(LEVEL, [[[5, 5, 15, 15], [6, 16, 14, 24]]], [[1, 2]])
    res = MaxIoUAssigner(thresholds=(0.4, 0.5), labels=(0, -1, 1))(inputs)
    assert res.matched_gt[0, 4] == 0 and res.labels[0, 4] == 1  # IoU 1
    # GT 1 [6,16,14,24] vs anchor 7 [5,15,15,25]: IoU 64/100 = 0.64 -> positive
    assert res.matched_gt[0, 7] == 1 and res.labels[0, 7] == 2
    assert (res.labels[0, [0, 2, 6, 8]] == K).all()


def test_max_iou_ignores_between_thresholds_and_low_quality():
    # GT [5,5,13,13] vs anchor 4 [5,5,15,15]: IoU 0.64; raise thresholds so it falls in the
    # ignore band, then low-quality matching re-claims it as the GT's best anchor.
    inputs = make_inputs(LEVEL, [[[5, 5, 13, 13]]])
    assigner = MaxIoUAssigner(
        thresholds=(0.5, 0.7), labels=(0, -1, 1), allow_low_quality_matches=False
    )
    res = assigner(inputs)
    assert res.labels[0, 4] == -1 and res.matched_gt[0, 4] == -1
    assigner = MaxIoUAssigner(
        thresholds=(0.5, 0.7), labels=(0, -1, 1), allow_low_quality_matches=True
    )
    res = assigner(inputs)
    assert res.labels[0, 4] == 0 and res.matched_gt[0, 4] == 0


def test_pad_gt_instances_rejects_bad_boxes():
    from detectron2.structures import Boxes, Instances

    good = Instances(
        (32, 32), gt_boxes=Boxes(torch.tensor([[1.0, 1, 5, 5]])), gt_classes=torch.tensor([0])
    )
    empty = Instances(
        (32, 32), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.long)
    )
    boxes, classes, counts = pad_gt_instances([good, empty])
    assert boxes.shape == (2, 1, 4) and counts.tolist() == [1, 0]
    bad = Instances(
        (32, 32),
        gt_boxes=Boxes(torch.tensor([[1.0, 1, float("nan"), 5]])),
        gt_classes=torch.tensor([0]),
    )
    with pytest.raises(ValueError, match="non-finite GT box"):
        pad_gt_instances([good, bad])
    flipped = Instances(
        (32, 32), gt_boxes=Boxes(torch.tensor([[5.0, 1, 1, 5]])), gt_classes=torch.tensor([0])
    )
    with pytest.raises(ValueError, match="x2 < x1"):
        pad_gt_instances([flipped])


# ---------------------------------------------------------------- the builder registry
def _shipped_assigner_classes():
    """Every concrete LabelAssigner class defined in a module of semianchor.modeling.assigners."""
    import importlib
    import inspect
    import pkgutil

    import semianchor.modeling.assigners as package
    from semianchor.modeling.assigners import LabelAssigner

    found = set()
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, LabelAssigner)
                and cls.__module__ == module.__name__
                and not inspect.isabstract(cls)
                and cls is not LabelAssigner
            ):
                found.add(cls)
    return found


def test_every_shipped_assigner_is_registered_and_builds_from_the_default_config():
    """One registry (assigners/build.py) builds every rule the library ships, PADet's staged
    matching included: a new rule without a builder fails here."""
    from detectron2.config import get_cfg

    from semianchor.config import add_semianchor_config
    from semianchor.modeling.assigners import LabelAssigner, StagedAssigner
    from semianchor.modeling.assigners.build import ASSIGNER_BUILDERS, build_assigner

    cfg = add_semianchor_config(get_cfg())
    built = set()
    for name in ASSIGNER_BUILDERS:
        assigner = build_assigner(cfg, name)
        assert isinstance(assigner, LabelAssigner), name
        built.add(type(assigner))
        if isinstance(assigner, StagedAssigner):
            built.update(type(a) for _, a in assigner.stages)
    shipped = _shipped_assigner_classes()
    assert len(shipped) >= 7, shipped  # ATSS, MaxIoU, DLA, Cleanliness, SAD, Staged, Promoted
    missing = {c.__name__ for c in shipped - built}
    assert not missing, f"assigners with no builder in ASSIGNER_BUILDERS: {sorted(missing)}"
    assert {"ATSS", "MaxIoU", "DLA", "Cleanliness", "SAD", "PADet"} <= set(ASSIGNER_BUILDERS)
    cfg.MODEL.SEMIANCHOR.ASSIGNER.NAME = "DLA"
    assert type(build_assigner(cfg)).__name__ == "DLAAssigner"  # the config's name by default
    with pytest.raises(KeyError, match="unknown assigner name 'Nope'"):
        build_assigner(cfg, "Nope")


def test_location_index_is_int64_with_and_without_anchors():
    """An index tensor even for an empty anchor set (no levels): int64, so it can index."""
    inputs = make_inputs(LEVEL, [[[0, 0, 10, 10]]])
    assert inputs.location_index().dtype == torch.int64
    inputs.anchors, inputs.anchor_strides = torch.zeros(0, 4), torch.zeros(0)
    inputs.num_anchors_per_level = []
    index = inputs.location_index()
    assert index.dtype == torch.int64 and index.shape == (0,)


def test_register_assigner_builder_takes_a_name_once(monkeypatch):
    """A project registers its own rule by name; a taken name is refused (the table is copied so
    the test leaves the real one untouched)."""
    from semianchor.modeling.assigners import build

    monkeypatch.setattr(build, "ASSIGNER_BUILDERS", dict(build.ASSIGNER_BUILDERS))
    mine = MaxIoUAssigner(thresholds=(0.3, 0.6))

    @build.register_assigner_builder("MyRule")
    def _mine(cfg):
        return mine

    assert build.ASSIGNER_BUILDERS["MyRule"] is _mine
    assert build.build_assigner(None, "MyRule") is mine
    with pytest.raises(KeyError, match=r"assigner builder 'MyRule' is already registered"):
        build.register_assigner_builder("MyRule")(_mine)


# ---------------------------------------------------------------- the shared interface
def test_assigner_reprs():
    """``Name(hyper-parameters)``: Detectron2's Matcher keeps -inf / inf around the thresholds,
    the repr shows the user's; a staged assigner lists its stages in order. ATSS's defaults are
    the paper's k = 9 and the official code's centre margin 0.01."""
    assert repr(ATSSAssigner()) == "ATSSAssigner(topk=9, center_eps=0.01)"
    max_iou = MaxIoUAssigner(thresholds=(0.3, 0.5), allow_low_quality_matches=False)
    want = "MaxIoUAssigner(thresholds=[0.3, 0.5], labels=[0, -1, 1], low_quality=False)"
    assert repr(max_iou) == want
    staged = StagedAssigner(stages=[("first", max_iou), ("second", ATSSAssigner(topk=4))])
    assert (
        repr(staged)
        == f"StagedAssigner(first={want}, second=ATSSAssigner(topk=4, center_eps=0.01))"
    )


def test_staged_assigner_returns_the_last_stage():
    """Three stages: the result is the third stage's, the first two are under ``stages``."""
    inputs = make_inputs(LEVEL, [[[7, 7, 17, 17]]])
    stages = [
        ("strict", MaxIoUAssigner(thresholds=(0.5, 0.7), allow_low_quality_matches=False)),
        ("atss", ATSSAssigner(topk=3)),
        ("loose", MaxIoUAssigner(thresholds=(0.05, 0.2), allow_low_quality_matches=False)),
    ]
    res = StagedAssigner(stages=stages)(inputs)
    assert list(res.stages) == ["strict", "atss"]
    for name, assigner in stages:
        alone = assigner(inputs)
        got = res.stages.get(name, res)
        assert torch.equal(got.labels, alone.labels), name
        assert got.inputs is inputs
    # GT [7,7,17,17]: IoU 64/136 with anchor 4, 16/184 with 5 and 7, 4/196 with 8, 0 elsewhere:
    # the loose band (>= 0.2 positive, < 0.05 background) keeps 4 and ignores 5 and 7
    assert res.labels[0].tolist() == [K, K, K, K, 0, -1, K, -1, K]
    assert (res.stages["strict"].labels == K).all()  # 0.47 < 0.5: background


def test_valid_gt_mask_counts_each_image():
    inputs = make_inputs(LEVEL, [[[0, 0, 10, 10], [0, 0, 5, 5]], [], [[1, 1, 4, 4]]])
    assert inputs.valid_gt_mask().tolist() == [[True, True], [False, False], [True, False]]


def test_interface_tensors_follow_the_inputs_not_the_default_device():
    """Index tensors live on the inputs' device whatever ``torch.set_default_device`` says (a CPU
    batch under a default device of 'meta' here, of 'cuda' in practice)."""
    inputs = make_inputs([(10, 10, 3, 3), (20, 20, 2, 2)], [[[0, 0, 10, 10]], []])
    with torch.device("meta"):
        index, mask = inputs.location_index(), inputs.valid_gt_mask()
    assert index.device == mask.device == torch.device("cpu")
    assert index.tolist() == list(range(13)) and mask.tolist() == [[True], [False]]
    inputs.anchors, inputs.anchor_strides = torch.zeros(0, 4), torch.zeros(0)
    inputs.num_anchors_per_level = []
    with torch.device("meta"):
        assert inputs.location_index().device == torch.device("cpu")


def test_location_index_with_several_anchors_per_location():
    """A_l anchors of a location are contiguous; locations are numbered across levels."""
    inputs = make_inputs([(10, 10, 2, 2), (20, 20, 1, 1)], [[[0, 0, 10, 10]]])
    inputs.anchors = torch.zeros(4 * 3 + 1 * 2, 4)
    inputs.num_anchors_per_level, inputs.anchors_per_location = [12, 2], [3, 2]
    inputs.anchor_strides = torch.tensor([10.0] * 12 + [20.0] * 2)
    assert inputs.location_index().tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4]
    assert inputs.num_locations == 5


def test_uniform_anchors_per_location_without_levels_is_one():
    inputs = make_inputs(LEVEL, [[[0, 0, 10, 10]]])
    inputs.anchors, inputs.anchor_strides = torch.zeros(0, 4), torch.zeros(0)
    inputs.num_anchors_per_level = []
    assert inputs.uniform_anchors_per_location("ATSS") == 1


def test_decoded_pred_boxes_uses_the_anchor_strides():
    """LTRB distances are in stride units: anchor 4 (centre (10, 10), stride 10) with (1, 1, 2,
    0.5) decodes to [0, 0, 30, 15]; without a box coder (or regression) it is an error."""
    from semianchor.modeling.box_coder import LTRBBoxCoder

    inputs = make_inputs(LEVEL, [[[0, 0, 10, 10]]])
    inputs.pred_regression = torch.zeros(1, 9, 4)
    inputs.pred_regression[0, 4] = torch.tensor([1.0, 1, 2, 0.5])
    msg = r"^this assigner needs predictions: pred_regression and box_coder are None$"
    with pytest.raises(ValueError, match=msg):
        inputs.decoded_pred_boxes()
    inputs.box_coder = LTRBBoxCoder()
    assert inputs.decoded_pred_boxes()[0, 4].tolist() == [0.0, 0.0, 30.0, 15.0]


def test_matched_boxes_are_zero_where_unmatched():
    gt = torch.tensor([[[1.0, 2, 3, 4], [5, 6, 7, 8]]])
    ts = TargetSet(matched_gt=torch.tensor([[1, -1, 0]]), labels=torch.tensor([[0, K, 0]]))
    assert ts.matched_boxes(gt).tolist() == [[[5, 6, 7, 8], [0, 0, 0, 0], [1, 2, 3, 4]]]
