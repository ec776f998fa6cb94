"""The shared detector base on toy detectors: per-level anchor counts (6 and 4), per-image anchors,
per-location outputs with a second named target set, two assignment stages in one step, softmax
classification and a replaced NMS step. Nothing here is a shipped method: these are the shapes SAD
and PADet need, checked before they exist."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import Backbone
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from semianchor.modeling.assigners import (
    AssignInputs,
    LabelAssigner,
    MaxIoUAssigner,
    StagedAssigner,
    TargetSet,
)
from semianchor.modeling.box_coder import DeltaBoxCoder
from semianchor.modeling.heads.dense_head import HeadOutput
from semianchor.modeling.losses import focal_loss
from semianchor.modeling.meta_arch import AssignmentDetector

from .conftest import build_yacs

K = 3
CELLS = [6, 4]  # SSD-like: 6 anchors per location on the first level, 4 on the second
SIZE = 64


class ToyBackbone(Backbone):
    """Two levels, strides 8 and 16."""

    def __init__(self, channels=8):
        super().__init__()
        self.c1 = nn.Conv2d(3, channels, 3, stride=8, padding=1)
        self.c2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.channels = channels

    def forward(self, x):
        f1 = torch.relu(self.c1(x))
        return {"f1": f1, "f2": torch.relu(self.c2(f1))}

    def output_shape(self):
        return {
            "f1": ShapeSpec(channels=self.channels, stride=8),
            "f2": ShapeSpec(channels=self.channels, stride=16),
        }


class ToyHead(nn.Module):
    """One 3x3 conv per output and level; A_l anchors per location on level l. ``cls_per`` puts
    the classification per anchor or per location; ``extra`` adds a per-anchor 1-wide output."""

    def __init__(self, channels=8, cls_per="anchor", cls_dim=K, extra=None):
        super().__init__()
        self.num_anchors = list(CELLS)
        self._outputs = {"cls": HeadOutput(cls_dim, cls_per), "reg": HeadOutput(4)}
        if extra:
            self._outputs[extra] = HeadOutput(1)
        self.convs = nn.ModuleDict(
            {
                name: nn.ModuleList(
                    nn.Conv2d(channels, spec.dim * (a if spec.per == "anchor" else 1), 3, padding=1)
                    for a in CELLS
                )
                for name, spec in self._outputs.items()
            }
        )
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.normal_(conv.weight, std=0.01)
                nn.init.zeros_(conv.bias)

    @property
    def outputs(self):
        return dict(self._outputs)

    def forward(self, features):
        return {k: [conv(f) for conv, f in zip(convs, features)] for k, convs in self.convs.items()}


def toy_anchor_generator():
    return DefaultAnchorGenerator(
        sizes=[[16.0], [32.0]],
        aspect_ratios=[[1.0, 2.0, 3.0, 0.5, 1 / 3, 1.5], [1.0, 2.0, 0.5, 1 / 3]],
        strides=[8, 16],
        offset=0.5,
    )


def toy_detector(cls=AssignmentDetector, head=None, assigner=None, **kw):
    torch.manual_seed(0)
    return cls(
        backbone=ToyBackbone(),
        head=head or ToyHead(),
        head_in_features=["f1", "f2"],
        anchor_generator=toy_anchor_generator(),
        box_coder=DeltaBoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
        assigner=assigner or MaxIoUAssigner(thresholds=(0.4, 0.5), labels=(0, -1, 1)),
        num_classes=K,
        box_loss_type="smooth_l1",
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
        **kw,
    )


def batch(num_images=2, empty=()):
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(num_images):
        m = 0 if i in empty else 3
        xy = torch.rand(m, 2, generator=g) * 30
        wh = torch.rand(m, 2, generator=g) * 25 + 8
        inst = Instances(
            (SIZE, SIZE),
            gt_boxes=Boxes(torch.cat([xy, xy + wh], 1)),
            gt_classes=torch.randint(0, K, (m,), generator=g),
        )
        image = torch.rand(3, SIZE, SIZE, generator=g) * 255
        out.append({"image": image, "instances": inst, "height": SIZE, "width": SIZE})
    return out


def train_step(model, data):
    model.train()
    with EventStorage():
        losses = model(data)
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    return losses


# ---------------------------------------------------------------- per-level anchor counts
def test_per_level_anchor_counts_flatten_in_detectron2_order():
    """Level l has H_l * W_l * A_l anchors, location-major with the A_l cell anchors contiguous
    (DefaultAnchorGenerator's order): a prediction tagged (level, y, x, a) must land on the
    anchor with that index after flattening, for A_l = 6 and 4."""
    model = toy_detector()
    features = [torch.zeros(1, 8, 4, 5), torch.zeros(1, 8, 2, 3)]
    anchors = model.anchor_generator(features)
    assert [len(a) for a in anchors] == [4 * 5 * 6, 2 * 3 * 4]
    preds = {"cls": [], "reg": []}
    expected_tags = []
    for level, (f, A) in enumerate(zip(features, CELLS)):
        H, W = f.shape[-2:]
        tag = torch.zeros(1, A * 4, H, W)
        for y in range(H):
            for x in range(W):
                for a in range(A):
                    value = level * 1000 + y * 100 + x * 10 + a
                    tag[0, a * 4 : (a + 1) * 4, y, x] = value  # channel = a * 4 + coordinate
                    expected_tags.append(value)
        preds["reg"].append(tag)
        preds["cls"].append(torch.zeros(1, A * K, H, W))
    flat = model.flatten_predictions(preds)
    assert flat["reg"].shape == (1, sum(len(a) for a in anchors), 4)
    assert flat["reg"][0, :, 0].tolist() == expected_tags
    # ... and the anchor of the same index sits at that location with that cell shape
    all_anchors = torch.cat([a.tensor for a in anchors])
    for r in (0, 7, 6 * 5 + 3, 4 * 5 * 6 + 9):
        tag = expected_tags[r]
        level, y, x, a = tag // 1000, tag // 100 % 10, tag // 10 % 10, tag % 10
        stride = (8, 16)[level]
        centre = (all_anchors[r, :2] + all_anchors[r, 2:]) / 2
        assert centre.tolist() == [(x + 0.5) * stride, (y + 0.5) * stride]
        cell = list(model.anchor_generator.cell_anchors)[level][a]
        assert torch.allclose(all_anchors[r, 2:] - all_anchors[r, :2], cell[2:] - cell[:2])


def test_assign_inputs_location_index_with_per_level_counts():
    inputs = AssignInputs(
        anchors=torch.zeros(2 * 6 + 3 * 4, 4),
        num_anchors_per_level=[12, 12],
        anchor_strides=torch.ones(24),
        anchors_per_location=[6, 4],
        gt_boxes=torch.zeros(1, 1, 4),
        gt_classes=torch.zeros(1, 1, dtype=torch.long),
        gt_counts=torch.zeros(1, dtype=torch.long),
        num_classes=K,
    )
    assert inputs.num_locations == 2 + 3
    assert inputs.location_index().tolist() == [0] * 6 + [1] * 6 + [2] * 4 + [3] * 4 + [4] * 4
    with pytest.raises(ValueError, match="same number of anchors per location"):
        inputs.uniform_anchors_per_location("ATSS")
    with pytest.raises(ValueError, match="does not divide"):
        AssignInputs(**{**inputs.__dict__, "anchors_per_location": [5, 4]})


# ---------------------------------------------------------------- per-image anchors
class PerImageAnchorDetector(AssignmentDetector):
    """Each image gets its own anchors (the shared ones shifted by 3 px per image index), as
    PADet's promoted anchors differ per image."""

    def forward_training(self, images, features, predictions, gt_instances):
        anchors = self.anchor_generator(features)
        shared = Boxes.cat(anchors).tensor
        per_image = torch.stack([shared + 3.0 * i for i in range(len(gt_instances))])
        preds = self.flatten_predictions(predictions)
        inputs = self.build_assign_inputs(
            per_image, preds, gt_instances, num_anchors_per_level=[len(a) for a in anchors]
        )
        self.seen = (inputs, self.assigner(inputs))
        return self.losses(inputs, preds, self.seen[1])


def test_toy_detector_with_per_image_anchors_and_6_4_anchors_trains_a_step():
    model = toy_detector(PerImageAnchorDetector)
    data = batch(2, empty=(1,)) + batch(1)
    losses = train_step(model, data)
    inputs, result = model.seen
    assert inputs.per_image_anchors and inputs.anchors.shape[0] == 3
    assert inputs.anchors_per_location == CELLS
    # the per-image result is each image's own max-IoU assignment
    for i in range(3):
        one = AssignInputs(
            **{
                **inputs.__dict__,
                "anchors": inputs.anchors[i],
                "gt_boxes": inputs.gt_boxes[i : i + 1],
                "gt_classes": inputs.gt_classes[i : i + 1],
                "gt_counts": inputs.gt_counts[i : i + 1],
            }
        )
        assert torch.equal(model.assigner(one).matched_gt[0], result.matched_gt[i])
    assert not torch.equal(result.matched_gt[0], result.matched_gt[2])  # anchors differ
    assert (result.labels[1] == K).all()  # the empty image: all background
    assert set(losses) == {"loss_dense_cls", "loss_dense_box"}
    assert losses["loss_dense_box"] > 0


def test_positive_centerness_of_per_image_anchors():
    """FCOS Eq. 3, sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b)), of each positive
    anchor's centre w.r.t. its matched GT, with each image's own anchors. Image 0, GT
    [0,0,16,16]: centres (4, 4) -> 1/3 and (8, 8) -> 1. Image 1, GT 1 = [0,0,20,10]: centres
    (6, 5) -> sqrt(6/14) and (2, 2) -> sqrt(2/18 x 2/8) = 1/6."""
    anchors = torch.tensor(
        [
            [[0, 0, 8, 8], [20, 20, 28, 28], [4, 4, 12, 12]],
            [[2, 0, 10, 10], [0, 0, 4, 4], [20, 20, 28, 28]],
        ],
        dtype=torch.float32,
    )
    inputs = AssignInputs(
        anchors=anchors,
        num_anchors_per_level=[3],
        anchor_strides=torch.full((3,), 8.0),
        anchors_per_location=1,
        gt_boxes=torch.tensor(
            [[[0, 0, 16, 16], [0, 0, 0, 0]], [[0, 0, 2, 2], [0, 0, 20, 10]]], dtype=torch.float32
        ),
        gt_classes=torch.zeros(2, 2, dtype=torch.long),
        gt_counts=torch.tensor([1, 2]),
        num_classes=K,
    )
    matched = torch.tensor([[0, -1, 0], [1, 1, -1]])
    result = TargetSet.from_matches(matched, inputs.gt_classes, K)
    pos = result.positive_mask(K)  # 2 + 2 positives, image-major
    got = toy_detector().positive_centerness(inputs, result, pos)
    torch.testing.assert_close(got, torch.tensor([1 / 3, 1.0, math.sqrt(6 / 14), 1 / 6]))


def test_yacs_box_coder_weights_reach_the_detector():
    """MODEL.SEMIANCHOR.BOX_CODER.WEIGHTS (here neither the config's (1, 1, 1, 1) nor the
    defaults (10, 10, 5, 5)) are the built detector's delta coder's."""
    weights = (2.0, 3.0, 4.0, 6.0)
    opts = ["MODEL.SEMIANCHOR.BOX_CODER.WEIGHTS", str(weights)]
    model, _ = build_yacs("configs/yacs/NoisyAnchor_RetinaNet_R_50_FPN_1x.yaml", opts)
    assert model.box_coder.weights == weights


# ---------------------------------------------------------------- per-location outputs
class LocationAssigner(LabelAssigner):
    """Max-IoU anchors, plus a "locations" set: a location is positive iff one of its anchors
    is (with the class of its first positive anchor)."""

    def __init__(self):
        self.anchors = MaxIoUAssigner(thresholds=(0.4, 0.5), labels=(0, -1, 1))

    def assign(self, inputs):
        result = self.anchors(inputs)
        loc = inputs.location_index()
        N, L = inputs.num_images, inputs.num_locations
        matched = torch.full((N, L), -1, dtype=torch.long)
        pos = result.positive_mask(inputs.num_classes)
        for n, r in reversed(pos.nonzero().tolist()):  # reversed: the first positive wins
            matched[n, loc[r]] = result.matched_gt[n, r]
        result.target_sets["locations"] = TargetSet.from_matches(
            matched, inputs.gt_classes, inputs.num_classes
        )
        return result


def test_per_location_classification_trains_on_the_locations_set():
    model = toy_detector(head=ToyHead(cls_per="location"), assigner=LocationAssigner())
    model.loss_normalizer_momentum = 0.0  # this batch's counts
    data = batch(2)
    model.train()
    images = model.preprocess_image(data)
    features = [model.backbone(images.tensor)[f] for f in model.head_in_features]
    preds = model.flatten_predictions(model.head(features))
    anchors = model.anchor_generator(features)
    R = sum(len(a) for a in anchors)
    locations = sum(f.shape[-2] * f.shape[-1] for f in features)
    assert preds["cls"].shape == (2, locations, K) and preds["reg"].shape == (2, R, 4)
    with EventStorage():
        inputs = model.build_assign_inputs(anchors, preds, [d["instances"] for d in data])
        result = model.assigner(inputs)
        losses = model.losses(inputs, preds, result)
    locs = result["locations"]
    assert result["anchors"] is result and result.names == ["anchors", "locations"]
    num_pos_loc = int(locs.positive_mask(K).sum())
    assert 0 < num_pos_loc < int(result.positive_mask(K).sum())  # several anchors per location
    target = F.one_hot(locs.labels, K + 1)[..., :K].float()
    expected = focal_loss(preds["cls"], target, 0.25, 2.0).sum() / num_pos_loc
    assert losses["loss_dense_cls"].item() == pytest.approx(expected.item(), rel=1e-5)
    # inference reads the declaration: each anchor takes its location's class scores
    model.eval()
    with torch.no_grad():
        out = model(data)
    assert len(out) == 2 and all(
        torch.isfinite(o["instances"].pred_boxes.tensor).all() for o in out
    )
    train_step(model, data)


# ---------------------------------------------------------------- two stages in one step
class RefinedAnchorAssigner(MaxIoUAssigner):
    """Stage 2: max-IoU on the boxes decoded from the predictions (per-image anchors), ignoring
    the anchors that stage 1 called background with a low predicted score."""

    requires_predictions = True

    def stage_inputs(self, inputs, previous):
        self.previous = sorted(previous)
        refined = AssignInputs(**{**inputs.__dict__, "anchors": inputs.decoded_pred_boxes()})
        refined.extras = {**inputs.extras, "initial_labels": previous["initial"].labels}
        return refined

    def assign(self, inputs):
        result = super().assign(inputs)
        easy = (inputs.extras["initial_labels"] == inputs.num_classes) & (
            inputs.pred_scores.max(-1).values < 0.01
        )
        drop = easy & (result.labels == inputs.num_classes)
        result.labels = torch.where(drop, torch.full_like(result.labels, -1), result.labels)
        return result


class TwoStageDetector(AssignmentDetector):
    """Stage 1 trains an auxiliary per-anchor objectness on the initial anchors; the base's
    losses train on stage 2's result and inputs."""

    loss_prefix = "two"

    def losses(self, inputs, preds, result):
        losses = super().losses(inputs, preds, result)
        first = result.stages["initial"]
        valid = first.labels >= 0
        target = first.positive_mask(self.num_classes).float()
        obj = F.binary_cross_entropy_with_logits(
            preds["objectness"][..., 0][valid], target[valid], reduction="sum"
        )
        normalizer = self.positives_normalizer(first, name="loss_normalizer_initial")
        assert normalizer != self.positives_normalizer(result)  # separate counts
        losses["loss_two_objectness"] = obj / normalizer
        return losses


def test_two_assignment_stages_in_one_step():
    initial = MaxIoUAssigner(thresholds=(0.4, 0.5), labels=(0, -1, 1))
    refined = RefinedAnchorAssigner(thresholds=(0.4, 0.5), labels=(0, -1, 1))
    staged = StagedAssigner(stages=[("initial", initial), ("refined", refined)])
    assert staged.requires_predictions
    model = toy_detector(TwoStageDetector, head=ToyHead(extra="objectness"), assigner=staged)
    seen = {}
    assign = staged.assign

    def spy(inputs):
        seen["result"] = assign(inputs)
        return seen["result"]

    staged.assign = spy
    with torch.no_grad():  # large regression: stage 2's anchors differ visibly from stage 1's
        for conv in model.head.convs["reg"]:
            nn.init.normal_(conv.bias, std=0.5)
    losses = train_step(model, batch(2, empty=(1,)))
    result = seen["result"]
    assert refined.previous == ["initial"]  # stage 2 saw stage 1's result
    assert list(result.stages) == ["initial"] and result.inputs.per_image_anchors
    first = result.stages["initial"]
    assert first.inputs.anchors.dim() == 2  # stage 1: the shared anchors
    assert not torch.equal(first.labels, result.labels)
    assert (result.labels == -1).any()  # stage 2's ignore rule read stage 1's labels
    assert set(losses) == {"loss_two_cls", "loss_two_box", "loss_two_objectness"}


def test_staged_assigner_rejects_bad_stages():
    with pytest.raises(ValueError, match="at least one"):
        StagedAssigner(stages=[])
    with pytest.raises(ValueError, match="unique"):
        StagedAssigner(stages=[("a", MaxIoUAssigner()), ("a", MaxIoUAssigner())])


# ---------------------------------------------------------------- loss and NMS hooks
def test_softmax_classification_and_a_replaced_nms_step():
    class KeepTopOne(AssignmentDetector):
        def nms(self, boxes, scores, classes):
            self.nms_calls = getattr(self, "nms_calls", 0) + 1
            return scores.argsort(descending=True)[:1], scores * 0.5

    model = toy_detector(
        KeepTopOne,
        head=ToyHead(cls_dim=K + 1),
        classification_loss="softmax_ce",
        test_score_thresh=0.0,
    )
    data = batch(2, empty=(1,))
    losses = train_step(model, data)
    # the softmax loss over the non-ignored anchors, background = K
    model.eval()
    with torch.no_grad():
        out = model(data)
    assert model.nms_calls == 2
    for o in out:
        inst = o["instances"]
        assert len(inst) == 1 and inst.scores.item() <= 0.5 * (1 - 1e-6)  # the hook's scores
    with pytest.raises(ValueError, match="needs 4 cls outputs"):
        toy_detector(head=ToyHead(cls_dim=K), classification_loss="softmax_ce")
    with pytest.raises(ValueError, match="classification_loss must be one of"):
        toy_detector(classification_loss="sigmoid")
    assert math.isfinite(float(losses["loss_dense_cls"]))


def test_cls_and_box_weighting_are_separate_switches():
    """The assigner's weights reach the classification loss only with cls_loss_weighting, the
    box loss only with box_loss_weighting (one switch, one effect)."""

    class Weighted(MaxIoUAssigner):
        def assign(self, inputs):
            result = super().assign(inputs)
            result.weights = torch.full(result.labels.shape, 3.0)
            return result

    data = batch(2)
    values = {}
    for cls_w, box_w in (("none", "none"), ("assigner", "none"), ("none", "assigner")):
        model = toy_detector(
            assigner=Weighted(),
            cls_loss_weighting=cls_w,
            box_loss_weighting=box_w,
            box_loss_normalizer="positives",
        )
        model.train()
        with EventStorage():
            values[cls_w, box_w] = {k: float(v) for k, v in model(data).items()}
    base = values["none", "none"]
    cls_only, box_only = values["assigner", "none"], values["none", "assigner"]
    assert cls_only["loss_dense_box"] == pytest.approx(base["loss_dense_box"])
    assert cls_only["loss_dense_cls"] > base["loss_dense_cls"]
    assert box_only["loss_dense_cls"] == pytest.approx(base["loss_dense_cls"])
    assert box_only["loss_dense_box"] == pytest.approx(3 * base["loss_dense_box"], rel=1e-5)
