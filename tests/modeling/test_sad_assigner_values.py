"""SAD's assigner (Sec. 3) on hand-computed values: the location labels of Eq. 4 / Eq. 1 where a
background or ignored anchor could be mistaken for a class, the FCOS location rules of Table 3
against a loop-based transcription of FCOS Sec. 3.1-3.2 (Tian et al. 2019), the targets of
background locations, the inclusive AC threshold of Eq. 2, and the tensors' device and dtype.
"""

import contextlib

import pytest
import torch

from semianchor.modeling.assigners import (
    AssignInputs,
    AssignResult,
    LabelAssigner,
    SADAssigner,
)
from semianchor.modeling.assigners.sad import fcos_location_labels, location_labels
from semianchor.modeling.box_coder import DeltaBoxCoder, LTRBBoxCoder

from .conftest import one_level_inputs

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/modeling/conftest.py

K = 3  # classes; K is the background label
BG = K


def _locations(labels, iou, A, num_classes=K, gamma=None):
    """``location_labels`` of (N, L * A) anchors, the A anchors of a location contiguous."""
    labels, iou = torch.tensor(labels), torch.tensor(iou)
    R = labels.shape[1]
    return location_labels(labels, iou, torch.arange(R) // A, R // A, num_classes, A, gamma)


# ---------------------------------------------------------------- Eq. 4 / Eq. 1 location labels
# (anchor labels, IoUs before regression, A, K, gamma) -> (location labels, winner anchors)
LOCATION_CASES = {
    # location 0: class 0 and a background anchor of higher IoU: one positive anchor is the
    # majority (Eq. 4), the background anchor never decides -> class 0 by anchor 0; location 1:
    # an ignored anchor of higher IoU and one of class 1 -> class 1 by anchor 3
    "background_and_ignored_anchors_never_decide": (
        ([[0, BG, -1, 1]], [[0.5, 0.9, 0.9, 0.4]], 2, K, None),
        ([[0, 1]], [[0, 3]]),
    ),
    # Eq. 1 with gamma 0.5, A = 2: s_bg = 0.5 * 1/2 = s_0 = 0.5 * 1/2: a tie, background wins;
    # location 1 (two anchors of class 2): s_2 = 0.5 > s_bg = 0 -> class 2, anchor 3 (higher IoU)
    "eq1_background_wins_a_tie": (
        ([[0, BG, 2, 2]], [[0.5, 0.2, 0.1, 0.3]], 2, K, 0.5),
        ([[BG, 2]], [[-1, 3]]),
    ),
    # no class at all (K = 0: every label is the background 0 or ignored)
    "no_classes": (([[0, 0, -1, 0]], [[0.3, 0.1, 0.2, 0.4]], 2, 0, None), ([[0, -1]], [[-1, -1]])),
    # more images than anchors (N = 3, R = 2): per image, the tie of class 2 goes to the higher
    # IoU; an image whose positive anchor is alone wins with it; ignored + background -> ignored
    "more_images_than_anchors": (
        ([[0, 1], [2, 2], [BG, -1]], [[0.3, 0.6], [0.7, 0.2], [0.1, 0.5]], 2, K, None),
        ([[1], [2], [-1]], [[1], [0], [-1]]),
    ),
}


@pytest.mark.parametrize("case", sorted(LOCATION_CASES))
def test_location_labels_hand_cases(case):
    (labels, iou, A, num_classes, gamma), (expected, winner) = LOCATION_CASES[case]
    got, got_winner = _locations(labels, iou, A, num_classes, gamma)
    assert got.tolist() == expected and got_winner.tolist() == winner


# ---------------------------------------------------------------- Table 3: FCOS location rules
def _points_inputs(points, strides, level_sizes, gts, classes, counts, A=2, seed=0):
    """Locations at ``points`` (x, y) with A anchors each (all centred on the point, of random
    unequal width and height), level by level (``level_sizes`` locations per level, of the given
    ``strides``); ``gts`` (N, M, 4), ``classes`` (N, M), ``counts`` (N,)."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.tensor(points, dtype=torch.float32)
    half = torch.randint(1, 9, (len(points), A, 2), generator=g).float()
    anchors = torch.cat([pts[:, None] - half, pts[:, None] + half], -1).reshape(-1, 4)
    per_loc = torch.cat([torch.full((n,), float(s)) for s, n in zip(strides, level_sizes)])
    return AssignInputs(
        anchors=anchors,
        num_anchors_per_level=[n * A for n in level_sizes],
        anchor_strides=per_loc.repeat_interleave(A),
        anchors_per_location=A,
        gt_boxes=torch.as_tensor(gts, dtype=torch.float32),
        gt_classes=torch.as_tensor(classes),
        gt_counts=torch.as_tensor(counts),
        num_classes=K,
        pred_scores=torch.full((len(gts), len(points) * A, K), 0.5),
        pred_regression=torch.zeros(len(gts), len(points) * A, 4),
        box_coder=DeltaBoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
    )


def _fcos_oracle(points, point_strides, point_ranges, gts, count, radius):
    """FCOS Sec. 3.1-3.2, one image, in plain Python: the GT of each location (-1 for none)."""
    out = []
    for (x, y), stride, (lo, hi) in zip(points, point_strides, point_ranges):
        best, best_area = -1, None
        for m, (x0, y0, x1, y1) in enumerate(gts[:count]):
            ltrb = (x - x0, y - y0, x1 - x, y1 - y)
            if min(ltrb) <= 0 or not lo < max(ltrb) <= hi:
                continue
            if radius is not None:  # centre sampling: inside the centre region, clipped to the GT
                s, cx, cy = stride * radius, (x0 + x1) / 2, (y0 + y1) / 2
                if not (max(cx - s, x0) < x < min(cx + s, x1)):
                    continue
                if not (max(cy - s, y0) < y < min(cy + s, y1)):
                    continue
            area = (x1 - x0) * (y1 - y0)
            if best_area is None or area < best_area:  # smallest area; ties: lowest GT index
                best, best_area = m, area
        out.append(best)
    return out


FCOS_RANGES = ((0.0, 12.0), (12.0, 1e8))


def _random_fcos_case(g, M):
    """Two images, M padded GTs (image 1 has one fewer valid GT when M > 1, its padding a real-
    looking box), 24 + 12 locations of strides 4 and 8; even GT corners and integer locations
    in [0, 40] so that locations fall on GT sides, on centre-region sides and at the size-range
    ends."""
    sizes = (24, 12)
    points = torch.randint(0, 41, (sum(sizes), 2), generator=g).tolist()
    corner = torch.randint(0, 16, (2, M, 2), generator=g) * 2
    extent = torch.randint(2, 13, (2, M, 2), generator=g) * 2
    gts = torch.cat([corner, corner + extent], -1).float().tolist()
    classes = torch.randint(0, K, (2, M), generator=g).tolist()
    counts = [M, max(M - 1, 1)]
    return points, sizes, gts, classes, counts


@pytest.mark.parametrize("radius", [None, 1.0, 1.5])
@pytest.mark.parametrize("M", [1, 3])
def test_fcos_location_labels_match_a_loop_transcription_of_fcos(M, radius):
    """Random integer cases (many boundary coincidences) against ``_fcos_oracle``: labels, the
    location's GT, and that the cases are not trivial (positives, and for M = 3 two GTs won)."""
    g = torch.Generator().manual_seed(11 + M)
    positives, won = 0, set()
    for trial in range(8):
        points, sizes, gts, classes, counts = _random_fcos_case(g, M)
        inputs = _points_inputs(points, (4, 8), sizes, gts, classes, counts, seed=trial)
        labels, loc_gt = fcos_location_labels(inputs, FCOS_RANGES, radius)
        strides = [4.0] * sizes[0] + [8.0] * sizes[1]
        ranges = [FCOS_RANGES[0]] * sizes[0] + [FCOS_RANGES[1]] * sizes[1]
        for n in range(2):
            expected = _fcos_oracle(points, strides, ranges, gts[n], counts[n], radius)
            assert loc_gt[n].tolist() == expected, (trial, n)
            classes_n = [classes[n][m] if m >= 0 else BG for m in expected]
            assert labels[n].tolist() == classes_n, (trial, n)
            positives += sum(m >= 0 for m in expected)
            won |= {m for m in expected if m >= 0}
    assert positives >= 10 and len(won) >= min(M, 2)


@pytest.mark.parametrize(
    "point, expected",
    [
        ((0.0, 5.0), BG),  # on the GT's left side: l = 0 is not inside
        ((0.5, 5.0), 1),  # l = 0.5 - x0 = 0.5 > 0 (x - y0 would be -1.5)
        ((6.0, 2.0), BG),  # on the top side: t = y - y0 = 0
    ],
)
def test_fcos_inside_is_strict_and_uses_each_sides_coordinate(point, expected):
    """GT [0, 2, 12, 10] of class 1, one level of range (0, 1e8): FCOS's l, t, r, b > 0."""
    inputs = _points_inputs([point], (8,), (1,), [[[0.0, 2.0, 12.0, 10.0]]], [[1]], [1])
    labels, loc_gt = fcos_location_labels(inputs, ((0.0, 1e8),))
    assert labels.tolist() == [[expected]] and loc_gt.tolist() == [[0 if expected < K else -1]]


def test_fcos_shrink_region_is_open_and_the_smallest_gt_wins():
    """Centre sampling, stride 8 x radius 1: GT [0, 0, 40, 40] (class 1) has the open centre
    region (12, 28) x (12, 28): its four sides are out, its centre (20, 20) in. The location
    (50, 5) is in GT A [48, 0, 52, 20] (4 x 20 = 80, class 2) and GT B [40, 0, 60, 10]
    (20 x 10 = 200, class 0), centre regions clipped to the GTs: A, the smaller, wins."""
    points = [(12.0, 20.0), (28.0, 20.0), (20.0, 12.0), (20.0, 28.0), (20.0, 20.0), (50.0, 5.0)]
    gts = [[[0.0, 0.0, 40.0, 40.0], [40.0, 0.0, 60.0, 10.0], [48.0, 0.0, 52.0, 20.0]]]
    inputs = _points_inputs(points, (8,), (6,), gts, [[1, 0, 2]], [3])
    labels, loc_gt = fcos_location_labels(inputs, ((0.0, 1e8),), center_radius=100.0)
    assert loc_gt.tolist() == [[0, 0, 0, 0, 0, 2]]  # a radius beyond the GTs: every GT side
    labels, loc_gt = fcos_location_labels(inputs, ((0.0, 1e8),), center_radius=1.0)
    assert labels.tolist() == [[BG, BG, BG, BG, 1, 2]] and loc_gt.tolist() == [[-1] * 4 + [0, 2]]


@pytest.mark.parametrize("rule, expected", [("fcos", [[1, 2, BG]]), ("fcos_shrink", [[BG, 2, BG]])])
def test_fcos_rule_samples_the_whole_box_and_fcos_shrink_its_centre(rule, expected):
    """One level of stride 8, range (0, 1e8); GT 0 [0, 0, 100, 100] class 1: the location (5, 5)
    is inside it but 45 px from its centre, beyond the 1.5 x 8 = 12 px centre region; GT 1
    [20, 0, 30, 10] class 2 contains the location (25, 5), its centre; (45, 105) is in no GT."""
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 100, 50, 110]])
    gts = torch.tensor([[[0.0, 0, 100, 100], [20, 0, 30, 10]]])
    inputs = one_level_inputs(
        anchors, gts, torch.tensor([[1, 2]]), torch.tensor([2]), K, **_predictions(3)
    )
    got = SADAssigner(location_rule=rule, fcos_size_ranges=((0.0, 1e8),))(inputs)["locations"]
    assert got.labels.tolist() == expected
    assert got.matched_gt.tolist() == [[0 if expected[0][0] < K else -1, 1, -1]]


def test_the_rules_name_themselves_when_the_anchors_per_location_differ():
    """Both location rules need one A; the FCOS rule needs one size range per level."""
    points = [(4.0, 4.0), (12.0, 4.0)]
    inputs = AssignInputs(
        anchors=torch.tensor([[2.0, 2, 6, 6], [8, 0, 16, 8], [10, 2, 14, 6]]),
        num_anchors_per_level=[1, 2],
        anchor_strides=torch.tensor([4.0, 8.0, 8.0]),
        anchors_per_location=[1, 2],
        gt_boxes=torch.tensor([[[0.0, 0.0, 8.0, 8.0]]]),
        gt_classes=torch.tensor([[0]]),
        gt_counts=torch.tensor([1]),
        num_classes=K,
        box_coder=DeltaBoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
        **_predictions(3),
    )
    with pytest.raises(ValueError, match=r"^SAD's FCOS location labelling needs the same number"):
        fcos_location_labels(inputs, FCOS_RANGES)
    with pytest.raises(ValueError, match=r"^SAD needs the same number of anchors per location"):
        SADAssigner()(inputs)
    two_levels = _points_inputs(points, (4, 8), (1, 1), [[[0.0, 0.0, 8.0, 8.0]]], [[0]], [1])
    with pytest.raises(ValueError, match=r"^fcos_size_ranges has 1 levels, the anchors 2$"):
        fcos_location_labels(two_levels, FCOS_RANGES[:1])


@contextlib.contextmanager
def _foreign_defaults():
    """Default device "meta" and default dtype float64: a tensor the code under test creates
    without an explicit device or dtype is then on the wrong device or of the wrong dtype."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.device("meta"):
            yield
    finally:
        torch.set_default_dtype(dtype)


def test_fcos_location_labels_of_no_locations_and_no_gts_are_empty():
    """The degenerate batch: no anchors, no GT (M = 0): (N, 0) int64 labels and GT indices."""
    inputs = AssignInputs(
        anchors=torch.zeros(0, 4),
        num_anchors_per_level=[0],
        anchor_strides=torch.zeros(0),
        anchors_per_location=1,
        gt_boxes=torch.zeros(2, 0, 4),
        gt_classes=torch.zeros(2, 0, dtype=torch.int64),
        gt_counts=torch.zeros(2, dtype=torch.int64),
        num_classes=K,
    )
    for radius in (None, 1.5):
        with _foreign_defaults():  # on the inputs' device (see the last test)
            outputs = fcos_location_labels(inputs, FCOS_RANGES[:1], radius)
        for out in outputs:
            assert out.shape == (2, 0) and out.dtype == torch.int64 and out.device.type == "cpu"


# ---------------------------------------------------------------- the assigner's targets
def _predictions(R, regression=None):
    return dict(
        pred_scores=torch.full((1, R, K), 0.5),
        pred_regression=torch.zeros(1, R, 4) if regression is None else regression,
    )


def _three_locations(**fields):
    """One anchor per location: a0 [0, 0, 10, 10], a1 [20, 0, 30, 10], a2 [40, 0, 50, 10];
    GT 0 [0, 0, 10, 5] class 1 (IoU with a0 exactly 50 / 100 = 0.5), GT 1 = a1, class 2;
    a2 overlaps no GT."""
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]])
    gts = torch.tensor([[[0.0, 0, 10, 5], [20, 0, 30, 10]]])
    fields = {**_predictions(3), **fields}
    return one_level_inputs(anchors, gts, torch.tensor([[1, 2]]), torch.tensor([2]), K, **fields)


@pytest.mark.parametrize("regression", ["anchor", "location"])
def test_background_location_targets_and_the_inclusive_ac_threshold(regression):
    """Zero regression: mu = IoU before regression = (0.5, 1, 0). a0's mu equals the threshold
    0.5 (mu >= 0.5: an AC positive, mu_hat = (0.5 / 0.5)^0.9 = 1); a2's location is background:
    location GT -1, regression label K (background, not ignored) and GT -1 under R1 and R2, AC
    ignored with GT -1."""
    res = SADAssigner(regression=regression)(_three_locations())
    assert res["locations"].labels.tolist() == [[1, 2, BG]]
    assert res["locations"].matched_gt.tolist() == [[0, 1, -1]]
    assert res.labels.tolist() == [[1, 2, BG]] and res.matched_gt.tolist() == [[0, 1, -1]]
    ac = res["anchor_cls"]
    assert res.extras["iou_after_regression"].tolist() == [[0.5, 1.0, 0.0]]
    assert ac.labels.tolist() == [[0, 0, -1]] and ac.matched_gt.tolist() == [[0, 1, -1]]
    assert ac.soft_targets.tolist() == [[1.0, 1.0, 0.0]]
    above = SADAssigner(regression=regression, ac_iou_threshold=0.55)(_three_locations())
    assert above["anchor_cls"].labels.tolist() == [[1, 0, -1]]
    assert above["anchor_cls"].matched_gt.tolist() == [[-1, 1, -1]]


def test_ac_labels_decode_ltrb_distances_in_strides():
    """With the LTRB coder the regression is (l, t, r, b) / stride (stride 8): a1's prediction
    (5, 5, 5, 5) / 8 decodes to [20, 0, 30, 10] = GT 1 (mu = 1); a0's (1, 1, 1, 1) / 8 to
    [4, 4, 6, 6], across GT 0 [0, 0, 10, 5]'s side: IoU 2 / (4 + 50 - 2) = 1 / 26 < 0.5."""
    reg = torch.zeros(1, 3, 4)
    reg[0, 0], reg[0, 1] = 1.0 / 8, 5.0 / 8
    inputs = _three_locations(**_predictions(3, reg))
    inputs.box_coder = LTRBBoxCoder()
    res = SADAssigner()(inputs)
    mu = res.extras["iou_after_regression"][0]
    assert mu[:2].tolist() == pytest.approx([1 / 26, 1.0], abs=1e-6)
    assert res["anchor_cls"].labels.tolist() == [[1, 0, -1]]


class _FixedMatcher(LabelAssigner):
    """A static rule that gives the anchors fixed GTs and no ``max_iou``."""

    def __init__(self, matched):
        self.matched = torch.tensor(matched)

    def assign(self, inputs):
        return AssignResult.from_matches(self.matched, inputs.gt_classes, inputs.num_classes)


def test_a_matcher_without_ious_breaks_ties_by_the_lowest_anchor_index():
    """Two locations of A = 2: location 0 has one anchor of class 2 (GT 1) and one of class 1
    (GT 0), a tie; without IoUs (all 0, float) the lower anchor index decides -> class 2, GT 1.
    Location 1: background and a class-1 anchor -> class 1, GT 0, decided by anchor 3."""
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 14, 14], [20, 20, 30, 30], [16, 16, 34, 34]])
    inputs = AssignInputs(
        anchors=anchors,
        num_anchors_per_level=[4],
        anchor_strides=torch.full((4,), 8.0),
        anchors_per_location=2,
        gt_boxes=torch.tensor([[[0.0, 0, 11, 11], [20, 20, 31, 30]]]),
        gt_classes=torch.tensor([[1, 2]]),
        gt_counts=torch.tensor([2]),
        num_classes=K,
        box_coder=DeltaBoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
        **_predictions(4),
    )
    res = SADAssigner(matcher=_FixedMatcher([[1, 0, -1, 0]]))(inputs)
    iou = res.extras["max_iou"]
    assert iou.dtype == torch.float32 and iou.tolist() == [[0.0] * 4]
    assert res["locations"].labels.tolist() == [[2, 1]]
    assert res["locations"].matched_gt.tolist() == [[1, 0]]


# ---------------------------------------------------------------- device and dtype
def test_location_rules_follow_the_inputs_not_the_default_device_and_dtype():
    """The labels are built on the inputs' device with explicit dtypes: with the default device
    "meta" and the default dtype float64 (as a GPU run with CPU defaults, or a user who changed
    them) the results are the CPU ones. The size ranges are compared at the distances' float32
    precision: a GT whose right side is at 12.3 from the location is in the range (0, 12.3]."""
    labels, iou = torch.tensor([[0, BG, -1, 1]]), torch.tensor([[0.5, 0.9, 0.9, 0.4]])
    labels_args = (labels, iou, torch.arange(4) // 2, 2, K, 2)
    g = torch.Generator().manual_seed(5)
    points, sizes, gts, classes, counts = _random_fcos_case(g, 3)
    fcos_inputs = _points_inputs(points, (4, 8), sizes, gts, classes, counts)
    edge = _points_inputs([(0.0, 0.0)], (8,), (1,), [[[-1.0, -1.0, 12.3, 1.0]]], [[2]], [1])
    expected = [
        location_labels(*labels_args),
        fcos_location_labels(fcos_inputs, FCOS_RANGES),
        fcos_location_labels(fcos_inputs, FCOS_RANGES, 1.5),
    ]
    with _foreign_defaults():
        got = [
            location_labels(*labels_args),
            fcos_location_labels(fcos_inputs, FCOS_RANGES),
            fcos_location_labels(fcos_inputs, FCOS_RANGES, 1.5),
        ]
        edge_labels, _ = fcos_location_labels(edge, ((0.0, 12.3),))
    for (labels, idx), (want_labels, want_idx) in zip(got, expected):
        assert labels.device.type == "cpu" and idx.device.type == "cpu"
        assert torch.equal(labels, want_labels) and torch.equal(idx, want_idx)
    assert edge_labels.tolist() == [[2]]


# ---------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(regression="x"),
            r"^regression must be 'anchor' \(R1\) or 'location' \(R2\), got 'x'$",
        ),
        (dict(location_gamma=1.0), r"^location_gamma must be None or in \[0, 1\), got 1.0$"),
        (dict(sigma=1.5), r"^sigma must be in \[0, 1\], got 1.5$"),
        (
            dict(location_rule="centre"),
            r"^location_rule must be one of \('anchors', 'fcos', 'fcos_shrink'\), got 'centre'$",
        ),
        (
            dict(location_rule="fcos", location_gamma=0.1),
            r"^location_gamma \(Eq\. 1\) applies to the anchors' location rule, not 'fcos'$",
        ),
        (
            dict(fcos_size_ranges=((8.0, 8.0),)),
            r"^fcos_size_ranges must be \(lo, hi\) with lo < hi",
        ),
    ],
    ids=["regression", "gamma_1", "sigma", "rule", "gamma_with_fcos", "empty_range"],
)
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SADAssigner(**kwargs)


def test_the_ends_of_the_argument_ranges_and_the_fcos_radius_default():
    """gamma = 0 (Eq. 1 with no background weight) and sigma = 1 (mu_hat = mu / max mu) are
    valid; FCOS's centre-sampling radius 1.5 is the default."""
    assigner = SADAssigner(location_gamma=0.0, sigma=1.0)
    assert assigner.location_gamma == 0.0 and assigner.sigma == 1.0
    assert SADAssigner(location_rule="fcos_shrink").fcos_center_radius == 1.5
