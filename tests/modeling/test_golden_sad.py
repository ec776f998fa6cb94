"""Golden values of the Semi-Anchored Detector (Chen, Qian, Li, arXiv 2009.04989) on the tiny
fixed case of ``golden_case``: each loss term (Sec. 3.4: focal on locations, 2 x -ln IoU, 1 x
Eq. 3) with its normaliser, each switch of Tables 4-6 and S4 (Eq. 1's gamma, R2 regression,
sigma = 0, the QFL ablation) by its effect on a value, and the inference of Sec. 3.3 (top-1
anchor by AC probability, p_loc x p_ac, the location gate, "pos" and top-k, the no-AC random
anchor).

The case: K = 2, GT0 = [0, 0, 16, 16] (class 1) is anchor 0 exactly, GT1 = [16, 16, 32, 32]
(class 0) is anchor 6 exactly; every other anchor has IoU < 0.5 with both, so locations 0 and 3
are positive (classes 1 and 0) and anchors 0, 1, 6, 7 get AC labels.
"""

import math

import pytest
import torch
from fvcore.nn import sigmoid_focal_loss
from torchvision.ops import box_iou

from semianchor.modeling.assigners import SADAssigner
from semianchor.modeling.box_coder import DeltaBoxCoder
from semianchor.modeling.heads.dense_head import HeadOutput
from semianchor.modeling.meta_arch import SemiAnchoredDetector
from semianchor.modeling.meta_arch.sad import noac_draw_seed

from . import golden_case as golden

K = 2
W = (10.0, 10.0, 5.0, 5.0)  # the SAD configs' delta weights
GTS = [[0, 0, 16, 16], [16, 16, 32, 32]]
GT_CLASSES = [1, 0]
LOG_HALF = 5 * math.log(0.5)
REG = [
    [0.5, -0.5, 0.2, 0.1],  # anchor 0: close to GT0
    [0.0, 0.0, LOG_HALF + 0.1, LOG_HALF],  # anchor 1: shrunk onto GT0 (the location's best)
    [0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0],
    [1.0, 1.0, -0.5, 0.3],  # anchor 6: near GT1
    [0.0, 0.0, 0.0, 0.0],  # anchor 7: stays at IoU 0.25 with GT1 (y_hat = 0)
]
AC = [-0.3, 0.7, 0.0, 0.0, 0.0, 0.0, 1.2, -2.0]
CLS = [[-1.0, 0.5], [-2.0, -3.0], [0.3, -1.5], [1.0, -0.5]]  # per location
ALPHA, BETA = 0.25, 2.0  # Eq. 3


def sad(ac=True, assigner=None, **kw):
    outputs = {"cls": HeadOutput(K, "location"), "reg": HeadOutput(4)}
    if ac:
        outputs["ac"] = HeadOutput(1)
    return SemiAnchoredDetector(
        **golden.detector_kwargs(
            golden.FixedHead(outputs, 2),
            box_coder=DeltaBoxCoder(weights=W),
            assigner=SADAssigner(**(assigner or {})),
            num_classes=K,
            test_nms_thresh=0.4,
            **kw,
        )
    )


def train_flat():
    return {
        "cls": torch.tensor([CLS]),
        "reg": torch.tensor([REG]),
        "ac": torch.tensor([AC])[..., None],
    }


def hand_losses(location_labels, regressed, sigma=0.9, ac_loss="eq3", alpha=ALPHA, beta=BETA):
    """Sec. 3.4 written out. location_labels: class per location (K = background);
    regressed: {anchor: gt} of the box loss (S4); alpha, beta: Eq. 3's."""
    # location classification: focal (alpha 0.25, gamma 1) summed, / EMA(positive locations)
    targets = torch.zeros(4, K)
    for loc, c in enumerate(location_labels):
        if c < K:
            targets[loc, c] = 1.0
    num_loc = sum(c < K for c in location_labels)
    cls = sigmoid_focal_loss(torch.tensor(CLS), targets, alpha=0.25, gamma=1.0, reduction="sum")
    cls = float(cls) / golden.ema_first(num_loc)
    # box: 2 x -ln IoU of the decoded anchors, / EMA(regressed anchors)
    box = 0.0
    for a, g in regressed.items():
        decoded = golden.oracle_decode(W, golden.ANCHORS_16_32[a], REG[a])
        box += -math.log(float(box_iou(decoded, torch.tensor([GTS[g]]))))
    box = 2.0 * box / golden.ema_first(len(regressed))
    # AC: Eq. 2 targets on the anchors of positive locations, Eq. 3, / EMA(#y_hat = 1)
    decoded = golden.oracle_decode(W, golden.ANCHORS_16_32, REG)
    iou = box_iou(decoded, torch.tensor(GTS, dtype=torch.float32))  # (8, 2)
    mu, best_gt = iou.max(dim=1)
    y_hat, mu_of = {}, {}
    for loc, c in enumerate(location_labels):
        if c == K:
            continue
        for a in (2 * loc, 2 * loc + 1):
            mu_of[a] = float(mu[a])
            y_hat[a] = mu_of[a] >= 0.5 and GT_CLASSES[int(best_gt[a])] == c
    ac = 0.0
    for a in y_hat:
        same_location = [b for b in (a - a % 2, a - a % 2 + 1) if y_hat[b]]
        mu_hat = (mu_of[a] / max(mu_of[b] for b in same_location)) ** sigma if y_hat[a] else 0.0
        p = golden.sigmoid(AC[a])
        if ac_loss == "eq3":
            if y_hat[a]:
                ac += alpha * abs(mu_hat - p) ** beta * mu_hat * golden.softplus(-AC[a])
            else:
                ac += (1 - alpha) * p**beta * golden.softplus(AC[a])
        else:  # QFL-style: BCE(p, mu_hat) |mu_hat - p|^beta, alpha-balanced
            bce = mu_hat * golden.softplus(-AC[a]) + (1 - mu_hat) * golden.softplus(AC[a])
            ac += bce * abs(mu_hat - p) ** beta * (alpha * mu_hat + (1 - alpha) * (1 - mu_hat))
    ac = ac / golden.ema_first(sum(y_hat.values()))
    return {"loss_sad_cls": cls, "loss_sad_box": box, "loss_sad_ac": ac}


def assert_losses(got, expected):
    assert set(got) == set(expected)
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-5, abs=1e-7), (k, got, expected)


def test_the_case_is_what_the_docstring_says():
    model = sad()
    anchors = model.anchor_generator([torch.zeros(1, 1, 2, 2)])[0].tensor
    torch.testing.assert_close(anchors, torch.tensor(golden.ANCHORS_16_32, dtype=torch.float32))
    mu = box_iou(
        golden.oracle_decode(W, golden.ANCHORS_16_32, REG), torch.tensor(GTS, dtype=torch.float32)
    )
    assert (mu[[0, 1], 0] > 0.5).all() and mu[6, 1] > 0.5 and mu[7].max() < 0.5


def test_every_loss_term_and_its_normaliser():
    """Eq. 4 locations {0: class 1, 3: class 0}; R1 regression of anchors 0 and 6; AC on
    anchors 0, 1, 6 (y_hat = 1, mu_hat = (mu / best)^0.9) and 7 (y_hat = 0)."""
    got = golden.training_losses(sad(), train_flat(), [golden.gt_instances(GTS, GT_CLASSES)])
    assert_losses(got, hand_losses([1, K, K, 0], {0: 0, 6: 1}))


def test_the_normalisers_are_emas_across_steps():
    """Second step on the same model: each normaliser is 0.9 x its first value + 0.1 x the count
    (2 locations, 2 regressed anchors, 3 y_hat anchors)."""
    model = sad()
    golden.training_losses(model, train_flat(), [golden.gt_instances(GTS, GT_CLASSES)])
    second = golden.training_losses(model, train_flat(), [golden.gt_instances(GTS, GT_CLASSES)])
    first = hand_losses([1, K, K, 0], {0: 0, 6: 1})
    for key, count in (("loss_sad_cls", 2), ("loss_sad_box", 2), ("loss_sad_ac", 3)):
        ema2 = 0.9 * golden.ema_first(count) + 0.1 * count
        assert second[key] == pytest.approx(first[key] * golden.ema_first(count) / ema2, rel=1e-5)


def test_r2_regresses_every_anchor_of_a_positive_location_toward_its_gt():
    """S4's R2: anchors 0, 1 -> GT0, anchors 6, 7 -> GT1, / EMA(4)."""
    got = golden.training_losses(
        sad(assigner=dict(regression="location")),
        train_flat(),
        [golden.gt_instances(GTS, GT_CLASSES)],
    )
    expected = hand_losses([1, K, K, 0], {0: 0, 1: 0, 6: 1, 7: 1})
    assert_losses(got, expected)
    assert got["loss_sad_box"] != pytest.approx(
        hand_losses([1, K, K, 0], {0: 0, 6: 1})["loss_sad_box"]
    )


@pytest.mark.parametrize("gamma, locations", [(0.4, [1, K, K, 0]), (0.6, [K, K, K, K])])
def test_eq1_location_gamma(gamma, locations):
    """Table 4 (Eq. 1, A = 2): a location with one positive and one negative anchor is positive
    iff (1 - gamma) / 2 > gamma / 2, i.e. gamma < 1/2 (Proposition 1: then Eq. 4's labels)."""
    got = golden.training_losses(
        sad(assigner=dict(location_gamma=gamma)),
        train_flat(),
        [golden.gt_instances(GTS, GT_CLASSES)],
    )
    regressed = {0: 0, 6: 1} if locations[0] < K else {}
    assert_losses(got, hand_losses(locations, regressed))


def test_sigma_zero_gives_binary_ac_targets():
    """Table 5's "FL": sigma = 0, every y_hat anchor's target is 1."""
    got = golden.training_losses(
        sad(assigner=dict(sigma=0.0)), train_flat(), [golden.gt_instances(GTS, GT_CLASSES)]
    )
    expected = hand_losses([1, K, K, 0], {0: 0, 6: 1}, sigma=0.0)
    assert_losses(got, expected)
    assert expected["loss_sad_ac"] != pytest.approx(
        hand_losses([1, K, K, 0], {0: 0, 6: 1})["loss_sad_ac"], rel=1e-3
    )


def test_qfl_ac_loss_ablation():
    got = golden.training_losses(
        sad(ac_loss="qfl"), train_flat(), [golden.gt_instances(GTS, GT_CLASSES)]
    )
    assert_losses(got, hand_losses([1, K, K, 0], {0: 0, 6: 1}, ac_loss="qfl"))


@pytest.mark.parametrize("ac_loss", ["eq3", "qfl"])
def test_ac_alpha_and_beta_reach_the_ac_loss(ac_loss):
    """Eq. 3 (and the QFL ablation) with alpha 0.4 and beta 1.5 instead of 0.25 and 2, and the
    AC term weighted by 1.5."""
    model = sad(ac_loss=ac_loss, ac_alpha=0.4, ac_beta=1.5, ac_loss_weight=1.5)
    got = golden.training_losses(model, train_flat(), [golden.gt_instances(GTS, GT_CLASSES)])
    expected = hand_losses([1, K, K, 0], {0: 0, 6: 1}, ac_loss=ac_loss, alpha=0.4, beta=1.5)
    expected["loss_sad_ac"] *= 1.5
    assert_losses(got, expected)


def test_without_the_ac_head_there_is_no_ac_term():
    """Table 2's no-AC row: the same cls and box terms, no loss_sad_ac."""
    flat = train_flat()
    del flat["ac"]
    got = golden.training_losses(sad(ac=False), flat, [golden.gt_instances(GTS, GT_CLASSES)])
    expected = hand_losses([1, K, K, 0], {0: 0, 6: 1})
    del expected["loss_sad_ac"]
    assert_losses(got, expected)


def test_empty_image_only_the_classification_loss_and_normalisers_at_one():
    got = golden.training_losses(sad(), train_flat(), [golden.gt_instances([], [])])
    cls = sigmoid_focal_loss(
        torch.tensor(CLS), torch.zeros(4, K), alpha=0.25, gamma=1.0, reduction="sum"
    )
    assert_losses(
        got,
        {"loss_sad_cls": float(cls) / golden.ema_first(0), "loss_sad_box": 0.0, "loss_sad_ac": 0.0},
    )


# ---------------------------------------------------------------- inference (Sec. 3.3, Table 6)
TEST_CLS = [[-8.0, 2.0], [-8.0, -8.0], [-2.75, -8.0], [-8.0, -8.0]]
TEST_AC = [-1.0, 1.5, 0.0, 0.0, -0.85, -3.0, 0.0, 0.0]
TEST_REG = [[0.0] * 4 for _ in range(8)]
TEST_REG[1] = [2.5, 0.0, 0.0, 0.0]  # anchor 1 moved right by 2.5 / 10 * 32 = 8 px
BOX_A0, BOX_A1, BOX_A4 = [0, 0, 16, 16], [0, 0, 32, 24], [0, 16, 16, 32]  # decoded, clipped


def inference_flat(ac=True):
    flat = {"cls": torch.tensor([TEST_CLS]), "reg": torch.tensor([TEST_REG])}
    if ac:
        flat["ac"] = torch.tensor([TEST_AC])[..., None]
    return flat


def test_decoded_boxes_of_the_inference_case():
    decoded = golden.oracle_decode(W, golden.ANCHORS_16_32, TEST_REG).clamp(0, 32)
    torch.testing.assert_close(decoded[[0, 1, 4]], torch.tensor([BOX_A0, BOX_A1, BOX_A4]).float())


def test_top1_anchor_by_ac_probability_and_score_p_loc_times_p_ac():
    """Location 0 keeps anchor 1 (p_ac 0.82 > 0.27), score sigmoid(2) x sigmoid(1.5), box
    decoded from anchor 1. Location 2 passes the gate on p_loc = 0.06 > 0.05 although its final
    score 0.06 x 0.30 is below it (the gate is the location probability)."""
    got = golden.detections(sad(), inference_flat())[0]
    p_loc2 = golden.sigmoid(-2.75)
    assert p_loc2 > 0.05 and p_loc2 * golden.sigmoid(-0.85) < 0.05
    golden.assert_detections(
        got,
        [
            (BOX_A1, golden.sigmoid(2.0) * golden.sigmoid(1.5), 1),
            (BOX_A4, p_loc2 * golden.sigmoid(-0.85), 0),
        ],
    )


def both_anchors_of_location_0_and_anchor_4():
    """The detections when a location may keep more than one anchor (Table 6 "pos" at tau 0.1,
    "topk" at k = 2): anchors 1 and 0 of location 0 (IoU 1/3 < NMS 0.4), then anchor 4 of
    location 2, each scored p_loc x p_ac."""
    p0, p2 = golden.sigmoid(2.0), golden.sigmoid(-2.75)
    return [
        (BOX_A1, p0 * golden.sigmoid(1.5), 1),
        (BOX_A0, p0 * golden.sigmoid(-1.0), 1),
        (BOX_A4, p2 * golden.sigmoid(-0.85), 0),
    ]


def test_pos_inference_keeps_every_anchor_above_tau():
    """Table 6 "pos": tau 0.1 keeps both anchors of location 0 (IoU 1/3 < NMS 0.4) and anchor 4
    of location 2; tau 0.5 keeps only anchor 1 (location 2's best, 0.30, is below tau)."""
    low = golden.detections(sad(inference="pos", inference_tau=0.1), inference_flat())[0]
    golden.assert_detections(low, both_anchors_of_location_0_and_anchor_4())
    high = golden.detections(sad(inference="pos", inference_tau=0.5), inference_flat())[0]
    golden.assert_detections(high, [(BOX_A1, golden.sigmoid(2.0) * golden.sigmoid(1.5), 1)])


def test_topk_inference_keeps_the_k_best_anchors():
    """k = 2: both anchors of locations 0 and 2; anchor 5 ([0, 8, 24, 32] clipped) then loses
    to anchor 4 in the NMS (IoU 0.44 > 0.4)."""
    got = golden.detections(sad(inference="topk", inference_topk=2), inference_flat())[0]
    golden.assert_detections(got, both_anchors_of_location_0_and_anchor_4())


def test_without_ac_one_fixed_random_anchor_carries_the_location_probability():
    """Table 2 without the AC head: one anchor per location, score p_loc exactly (no factor),
    the same anchor on every call for the same image (the pick is seeded per image and draw, as
    ``SemiAnchoredDetector.forward`` seeds it from the input dict)."""
    model = sad(ac=False)

    def detections_of_image(image_id):
        model._noac_seeds = [noac_draw_seed({"image_id": image_id}, model.noac_draw)]
        return golden.detections(model, inference_flat(ac=False))[0]

    first = detections_of_image(7)
    again = detections_of_image(7)
    boxes, scores, classes = first
    assert len(scores) == 2 and classes.tolist() == [1, 0]
    assert float(scores[0]) == pytest.approx(golden.sigmoid(2.0), abs=1e-6)
    assert float(scores[1]) == pytest.approx(golden.sigmoid(-2.75), abs=1e-6)
    assert boxes[0].tolist() in (BOX_A0, BOX_A1)
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)


def test_the_tau_and_the_gate_are_strict():
    """Sec. 3.3 keeps the anchors with p(anchor) > tau and the locations with p(location) > the
    score threshold: at p exactly 0.5 (logit 0) with tau = threshold = 0.5 neither passes.
    One location, A = 2: anchor 0 has p_ac = 0.5, anchor 1 p_ac = sigmoid(1); class 0 has
    p_loc = 0.5, class 1 sigmoid(2)."""
    model = sad(inference="pos", inference_tau=0.5, test_score_thresh=0.5)
    preds = {"cls": torch.tensor([[0.0, 2.0]]), "ac": torch.tensor([[0.0], [1.0]])}
    scores, anchors, classes = model.level_candidates(preds, 2)
    assert anchors.tolist() == [1] and classes.tolist() == [1]
    assert scores.tolist() == pytest.approx([golden.sigmoid(2.0) * golden.sigmoid(1.0)])


NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize(
    "num_loc, device", [(64, "cpu"), (0, "cpu"), pytest.param(64, "cuda", marks=NO_CUDA)]
)
def test_the_no_ac_pick_is_drawn_from_the_images_generator(num_loc, device):
    """Table 2 without AC: location l keeps anchor pick[l] = randint(0, A) of the generator
    seeded with the image's draw seed (a CPU generator, whatever the predictions' device and
    the global RNG's state), scored p_loc; a level without locations gives no candidate."""
    model, A = sad(ac=False), 3
    logits = torch.linspace(-2.0, 2.0, num_loc * K).view(num_loc, K)  # every p_loc > 0.05
    seed = noac_draw_seed({"image_id": 11}, 0)
    pick = torch.randint(0, A, (num_loc,), generator=torch.Generator().manual_seed(seed))
    if num_loc:
        assert set(pick.tolist()) == {0, 1, 2}  # the case shows every anchor of a location
    expected = sorted((i * A + int(pick[i]), k) for i in range(num_loc) for k in range(K))
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        model._noac_generator = torch.Generator().manual_seed(seed)
        scores, anchors, classes = model.level_candidates({"cls": logits.to(device)}, A)
        got = sorted(zip(anchors.tolist(), classes.tolist()))
        assert got == expected
        p_loc = torch.sigmoid(logits[anchors.cpu() // A, classes.cpu()])
        torch.testing.assert_close(scores.cpu(), p_loc)


def test_noac_level_candidates_need_the_images_generator():
    model = sad(ac=False)
    with pytest.raises(RuntimeError, match=r"^the no-AC anchor pick needs the image's draw gen"):
        model.level_candidates({"cls": torch.zeros(4, K)}, 2)


def test_the_logged_ratios_with_one_gt():
    """GT0 alone: 1 positive anchor (0) of 8, 1 positive location (0) of 4, per GT and against
    the negatives: 1, 7, 1, 3."""
    got = golden.logged_scalars(sad(), train_flat(), [golden.gt_instances(GTS[:1], [1])])
    expected = {
        "sad/pos_per_gt_anchors": 1.0,
        "sad/neg_per_pos_anchors": 7.0,
        "sad/pos_per_gt_locations": 1.0,
        "sad/neg_per_pos_locations": 3.0,
    }
    assert {k: got[k] for k in expected} == pytest.approx(expected)


# ---------------------------------------------------------------- the training log
def test_the_logged_assignment_statistics():
    """Static anchors: 2 positive (0, 6), 6 background; locations: 2 positive (0, 3), 2
    background; mean mu_hat of the y_hat anchors 0, 1, 6; mean mu of the positive locations'
    anchors that were positive before regression (0, 6) and of those that were not (1, 7)."""
    got = golden.logged_scalars(sad(), train_flat(), [golden.gt_instances(GTS, GT_CLASSES)])
    mu = box_iou(
        golden.oracle_decode(W, golden.ANCHORS_16_32, REG), torch.tensor(GTS, dtype=torch.float32)
    )
    mu = mu.max(dim=1).values.tolist()
    best0 = max(mu[0], mu[1])
    mean_mu_hat = ((mu[0] / best0) ** 0.9 + (mu[1] / best0) ** 0.9 + 1.0) / 3
    expected = {
        "num_pos_anchors": 2.0,
        "num_pos_per_gt": 1.0,
        "sad/pos_per_gt_anchors": 1.0,
        "sad/neg_per_pos_anchors": 3.0,
        "sad/pos_per_gt_locations": 1.0,
        "sad/neg_per_pos_locations": 1.0,
        "sad/mean_mu_hat": mean_mu_hat,
        "sad/iou_after_reg_pos_anchors": (mu[0] + mu[6]) / 2,
        "sad/iou_after_reg_nonpos_anchors": (mu[1] + mu[7]) / 2,
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key


def test_mean_mu_hat_is_logged_only_with_a_positive_ac_target():
    """Every anchor moved away from its GT (IoU after regression < 0.5): the AC targets of the
    positive locations are all background, so there is no mean mu_hat to log."""
    flat = train_flat()
    flat["reg"] = torch.tensor([[[5.0, 5.0, 0.0, 0.0]] * 8])
    got = golden.logged_scalars(sad(), flat, [golden.gt_instances(GTS, GT_CLASSES)])
    assert "sad/pos_per_gt_locations" in got and "sad/mean_mu_hat" not in got


def test_noac_draw_seed_keys():
    """The seed comes from image_id, else file_name, else the pixels: two images with one file
    name share it, one image under two file names does not."""
    image, other = torch.zeros(3, 4, 4), torch.ones(3, 4, 4)
    seed = noac_draw_seed
    assert seed({"file_name": "a.jpg", "image": image}, 0) == seed(
        {"file_name": "a.jpg", "image": other}, 0
    )
    assert seed({"file_name": "a.jpg", "image": image}, 0) != seed(
        {"file_name": "b.jpg", "image": image}, 0
    )
    assert seed({"image_id": 3, "file_name": "a.jpg"}, 0) == seed({"image_id": 3}, 0)
    assert seed({"image": image}, 0) != seed({"image": other}, 0)
    assert seed({"image_id": 3}, 0) != seed({"image_id": 3}, 1)
    assert seed({"image_id": 3}, 0) != seed({"image_id": 4}, 0)


def test_noac_inference_outside_forward_says_how_to_run_it():
    words = r"^SAD without the AC head draws its anchors per image: run inference through model"
    with pytest.raises(RuntimeError, match=words + r"\(batched_inputs\)"):
        golden.detections(sad(ac=False), inference_flat(ac=False))
