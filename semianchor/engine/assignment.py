"""The label assignment of a batch, from any detector of the library, without training it.

:func:`run_assignment` runs a model's backbone and head on mapped inputs (with ``instances``) and
then its public assignment step, the same code path training takes:

* semianchor's one-stage detectors (:class:`AssignmentDetector`): ``model.assign(anchors, preds,
  gt_instances)``, which ``forward_training`` calls before its losses;
* Detectron2's own dense detectors (the RetinaNet and FCOS baselines): their
  ``label_anchors(anchors, gt_instances)``;
* a two-stage model whose proposal generator has an ``assign`` step (``NoisyAnchorRPN``):
  ``proposal_generator.assign(inputs, logits, deltas)`` (objectness, one class).

Every case returns the same :class:`Assignment`: the assigner's :class:`AssignInputs` and
:class:`AssignResult` (labels in {-1 ignore, 0..K-1, K background}, matched GT indices), so the
report, ``tools/visualize_assignment.py`` and the assignment analysis read one structure.
:func:`image_assignments` cuts it into one :class:`ImageAssignment` per image (numpy arrays of the
GTs and their positive anchors, per stage, and SAD's locations), which the assignment picture
(:func:`semianchor.visualization.draw_assignment`) draws; :func:`compute_assignment` does both.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..modeling.anchors import generator_assign_inputs
from ..modeling.assigners import AssignInputs, AssignResult

__all__ = [
    "Assignment",
    "ImageAssignment",
    "LocationTargets",
    "assignment_kind",
    "compute_assignment",
    "image_assignments",
    "is_static",
    "run_assignment",
]


@dataclass
class Assignment:
    """The label assignment of one batch.

    Attributes:
        inputs: the assigner's inputs (the detector's anchors, padded GTs, predictions).
        result: the final result; a staged assigner's earlier stages are in ``result.stages``.
        level_names: names of the pyramid levels (e.g. ["p3", ..., "p7"]).
        method: the detector and its assigner, for titles and tables.
        final_stage: the name of the final stage ("final" for a single-stage assigner).
        preds: the flattened head outputs of a semianchor detector (None when the head was not
            run: a static rule with ``feature_shapes``, or a model of another kind).
    """

    inputs: AssignInputs
    result: AssignResult
    level_names: List[str]
    method: str
    final_stage: str = "final"
    preds: Optional[Dict[str, Tensor]] = None

    def stages(self) -> List[Tuple[str, AssignInputs, AssignResult]]:
        """(name, inputs, result) of every stage in order, the final one last; each stage with
        the inputs it ran on (a later stage may see other anchors, e.g. promoted ones)."""
        out = [
            (name, _or(stage.inputs, self.inputs), stage)
            for name, stage in (self.result.stages or {}).items()
        ]
        return out + [(self.final_stage, _or(self.result.inputs, self.inputs), self.result)]


def _or(value, default):
    return default if value is None else value


def assignment_kind(model) -> str:
    """ "assigner" (semianchor one-stage), "label_anchors" (Detectron2 RetinaNet/FCOS) or "rpn"
    (a proposal generator with an ``assign`` step).

    Raises:
        TypeError: the model has none of them.
    """
    model = getattr(model, "module", model)
    if all(hasattr(model, a) for a in ("assign", "anchor_generator", "flatten_predictions")):
        return "assigner"
    if all(
        hasattr(model, a)
        for a in ("label_anchors", "anchor_generator", "preprocess_image", "backbone")
    ):
        return "label_anchors"
    rpn = getattr(model, "proposal_generator", None)
    if rpn is not None and hasattr(rpn, "assign") and hasattr(rpn, "label_and_sample_anchors"):
        return "rpn"
    raise TypeError(
        f"{type(model).__name__} has no semianchor label assigner (no public assign step) and is "
        "not a Detectron2 dense detector with label_anchors (RetinaNet, FCOS) nor a two-stage "
        "model whose proposal generator has an assign step: there is no assignment to look at"
    )


def is_static(model) -> Tuple[bool, str]:
    """Whether the model's assignment reads only anchors and GTs (True), or also its predictions
    (False), with the reason in words.

    Dynamic: an assigner with ``requires_predictions`` (DLA, cleanliness, SAD's IoU after
    regression) and any stage that reads the head's outputs through the inputs' extras (PADet's
    promotion, ``promote``, and its ``theta`` rule on the APM scores)."""
    from ..modeling.assigners import StagedAssigner

    model = getattr(model, "module", model)
    kind = assignment_kind(model)
    if kind == "label_anchors":
        return True, f"{type(model).__name__}.label_anchors reads anchors and GTs only"
    assigner = model.assigner if kind == "assigner" else model.proposal_generator.assigner
    stages = assigner.stages if isinstance(assigner, StagedAssigner) else [("", assigner)]
    for name, stage in stages:
        where = f" (stage {name!r})" if name else ""
        if stage.requires_predictions:
            return False, f"{stage!r}{where} reads the model's predictions"
        if getattr(stage, "promote", False):
            return False, f"{stage!r}{where} matches anchors promoted by the model's APM deltas"
        if getattr(stage, "theta", None) is not None:
            return False, f"{stage!r}{where} ignores negatives by the model's APM scores (theta)"
    return True, f"{assigner!r} reads anchors and GTs only"


def run_assignment(
    model,
    batched_inputs: List[Dict],
    iteration: int = 0,
    feature_shapes: Optional[Dict[Tuple[int, int], Dict[str, Tuple[int, int]]]] = None,
) -> Assignment:
    """The label assignment ``model`` makes on ``batched_inputs`` (mapped with
    ``is_train=True``: each has ``image`` and ``instances``), as in a training step.

    The model runs in eval mode without gradients (BatchNorm statistics untouched) and is
    restored; an ``EventStorage`` at ``iteration`` is open, for rules that follow the training
    progress (DLA's alpha). Prediction-aware rules see the model's own predictions.

    ``feature_shapes`` (a dict, filled as it goes) is for static rules (:func:`is_static`) over
    many images: the backbone runs once per padded input size, whose feature map sizes are kept;
    then every batch gets empty feature maps of those sizes (the anchor generator reads only
    their shapes) and the head is not run (``Assignment.preds`` is None). The assignment is the
    same, in far less time.

    Raises:
        TypeError: the model has no assignment step (:func:`assignment_kind`).
        ValueError: an input has no ``instances``; ``feature_shapes`` with a dynamic rule.
    """
    from detectron2.utils.events import EventStorage

    model = getattr(model, "module", model)  # DistributedDataParallel
    kind = assignment_kind(model)
    for i, x in enumerate(batched_inputs):
        if "instances" not in x:
            raise ValueError(
                f"input {i} has no 'instances': map it with DatasetMapper(is_train=True, ...)"
            )
    if feature_shapes is not None:
        static, why = is_static(model)
        if not static:
            raise ValueError(f"feature_shapes is for static rules only: {why}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), EventStorage(iteration):
            images = model.preprocess_image(batched_inputs)
            features = _features(model, images.tensor, feature_shapes)
            gt_instances = [x["instances"].to(model.device) for x in batched_inputs]
            if kind == "assigner":
                return _semianchor_assignment(model, features, gt_instances)
            if kind == "label_anchors":
                return _detectron2_assignment(model, features, gt_instances)
            return _rpn_assignment(model, features, gt_instances)
    finally:
        model.train(was_training)


def _features(model, images: Tensor, feature_shapes) -> Dict[str, Tensor]:
    """The backbone's features, or empty maps of the cached sizes (``feature_shapes``)."""
    if feature_shapes is None:
        return model.backbone(images)
    key = tuple(images.shape[-2:])
    if key not in feature_shapes:
        features = model.backbone(images[:1])
        feature_shapes[key] = {k: tuple(v.shape[-2:]) for k, v in features.items()}
    n = images.shape[0]
    return {
        k: images.new_empty((n, 0) + hw) for k, hw in feature_shapes[key].items()
    }  # the anchor generator reads shapes and device only


def _semianchor_assignment(model, features, gt_instances) -> Assignment:
    from ..modeling.assigners import StagedAssigner

    features = [features[f] for f in model.head_in_features]
    empty = any(f.shape[1] == 0 for f in features)  # static fast path: no head outputs
    preds = {} if empty else model.flatten_predictions(model.head(features))
    anchors = model.anchor_generator(features)
    inputs, result = model.assign(anchors, preds, gt_instances)
    assigner = model.assigner
    staged = isinstance(assigner, StagedAssigner)
    return Assignment(
        inputs=inputs,
        result=result,
        level_names=_level_names(model.head_in_features, len(inputs.num_anchors_per_level)),
        method=f"{type(model).__name__}, {assigner!r}",
        final_stage=assigner.stages[-1][0] if staged else "final",
        preds=preds or None,
    )


def _detectron2_assignment(model, features, gt_instances) -> Assignment:
    """Detectron2's RetinaNet / FCOS: ``label_anchors(anchors, gt_instances)`` (RetinaNet: max-IoU
    Matcher; FCOS: centre sampling and scale ranges) on the model's own anchors, as an
    :class:`AssignResult`. ``label_anchors`` gives each positive its matched GT *box*; the GT index
    is the first GT with exactly that box (identical duplicate GTs count as the first)."""
    features = [features[f] for f in model.head_in_features]
    anchors = model.anchor_generator(features)
    gt_labels, matched_boxes = model.label_anchors(anchors, gt_instances)
    K = model.num_classes
    inputs = generator_assign_inputs(model.anchor_generator, anchors, gt_instances, num_classes=K)
    labels = torch.stack([lab.to(torch.int64) for lab in gt_labels])  # (N, R)
    matched = torch.full_like(labels, -1)
    for i, boxes in enumerate(matched_boxes):
        m = int(inputs.gt_counts[i])
        pos = (labels[i] >= 0) & (labels[i] < K)
        if m and pos.any():
            same = (boxes[pos][:, None, :] == inputs.gt_boxes[i, :m][None]).all(dim=2)  # (P, M)
            matched[i, pos] = same.float().argmax(dim=1)
    return Assignment(
        inputs=inputs,
        result=AssignResult(matched_gt=matched, labels=labels),
        level_names=_level_names(model.head_in_features, len(anchors)),
        method=f"{type(model).__name__} (Detectron2's label_anchors)",
    )


def _rpn_assignment(model, features, gt_instances) -> Assignment:
    """A proposal generator's assignment (objectness: one class), on its own anchors and
    predictions (laid out as Detectron2's ``RPN.forward`` does)."""
    from detectron2.layers import cat

    rpn = model.proposal_generator
    features = [features[f] for f in rpn.in_features]
    anchors = rpn.anchor_generator(features)
    logits = deltas = None
    if all(f.shape[1] > 0 for f in features):  # else the static fast path: no head outputs
        logits, deltas = rpn.rpn_head(features)
        logits = cat([x.permute(0, 2, 3, 1).flatten(1) for x in logits], dim=1)
        box_dim = rpn.anchor_generator.box_dim
        deltas = cat(
            [
                x.view(x.shape[0], -1, box_dim, x.shape[-2], x.shape[-1])
                .permute(0, 3, 4, 1, 2)
                .flatten(1, -2)
                for x in deltas
            ],
            dim=1,
        )
    inputs, _ = rpn.label_and_sample_anchors(anchors, gt_instances)
    inputs, result = rpn.assign(inputs, logits, deltas)
    return Assignment(
        inputs=inputs,
        result=result,
        level_names=_level_names(rpn.in_features, len(anchors)),
        method=f"{type(model).__name__}: {type(rpn).__name__}, {rpn.assigner!r} (objectness)",
    )


def _level_names(names, num_levels: int) -> List[str]:
    names = list(names or [])
    return names if len(names) == num_levels else [f"level {k}" for k in range(num_levels)]


# ----------------------------------------------------------------------------- per image
@dataclass
class LocationTargets:
    """SAD's location targets of one image: its positive locations and, for each, the
    anchor-classification (AC) targets of the location's A anchors.

    Attributes:
        centres: (Q, 2) float centres of the positive locations.
        matched_gt: (Q,) int GT of each positive location (index into the image's GTs).
        anchor_boxes: (Q, A, 4) float XYXY boxes of each positive location's anchors.
        soft_targets: (Q, A) float AC soft target mu_hat of each anchor (0 where y_hat = 0).
        ac_positive: (Q, A) bool y_hat: the anchor's class after regression is the location's.
        stats: counts for the legend ("positive anchors", "negative anchors", "positive
            locations", "negative locations", "mean mu_hat").
    """

    centres: np.ndarray
    matched_gt: np.ndarray
    anchor_boxes: np.ndarray
    soft_targets: np.ndarray
    ac_positive: np.ndarray
    stats: Dict[str, float] = field(default_factory=dict)


@dataclass
class ImageAssignment:
    """The assignment of one image, in the coordinates of the (resized) input image.

    Attributes:
        gt_boxes: (M, 4) float XYXY GT boxes.
        gt_classes: (M,) int GT classes.
        anchor_boxes: (P, 4) float XYXY boxes of the positive anchors.
        matched_gt: (P,) int index into ``gt_boxes`` of each positive anchor's GT.
        anchor_levels: (P,) int pyramid level index of each positive anchor.
        level_names: names of the levels (e.g. ["p3", ..., "p7"]).
        method: a short description of the detector and its assigner (for titles).
        stage: the name of the assignment stage drawn ("" for a single-stage assigner).
        earlier_stages: a staged assigner's earlier stages, in order (PADet: "initial", the
            APM's matching on the initial anchors, before the final "promoted" one).
        locations: SAD's positive locations and AC targets (None for other methods).
    """

    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    anchor_boxes: np.ndarray
    matched_gt: np.ndarray
    anchor_levels: np.ndarray
    level_names: List[str]
    method: str
    stage: str = ""
    earlier_stages: List["ImageAssignment"] = field(default_factory=list)
    locations: Optional[LocationTargets] = None


def image_assignments(assignment: Assignment) -> List[ImageAssignment]:
    """Per image, the GT boxes, the positive anchors' boxes and the GT each one is matched to, in
    the coordinates of the (resized) input image; a staged assigner's earlier stages in
    ``earlier_stages``, SAD's positive locations and AC targets in ``locations``."""
    stages = assignment.stages()
    views = [
        _image_assignments(inputs, result, assignment.level_names, assignment.method)
        for _, inputs, result in stages
    ]
    out = views[-1]
    for (name, _, _), earlier in zip(stages[:-1], views[:-1]):
        for a, v in zip(out, earlier):
            v.stage = name
            a.earlier_stages.append(v)
    if len(stages) > 1:
        for a in out:
            a.stage = assignment.final_stage
    result, final_inputs = assignment.result, stages[-1][1]
    if "locations" in result.target_sets and "anchor_cls" in result.target_sets:
        for i, loc in enumerate(_location_targets(final_inputs, result)):
            out[i].locations = loc
    return out


def compute_assignment(
    model, batched_inputs: List[Dict], iteration: int = 0
) -> List[ImageAssignment]:
    """:func:`run_assignment` of ``model`` on mapped inputs (with ``instances``), per image
    (:func:`image_assignments`): what the assignment pictures draw.

    Every method's own anchors and assigner inputs are used (prediction-aware rules such as DLA
    or cleanliness see the model's real predictions). The model runs in eval mode (BatchNorm
    statistics untouched) and is restored.

    Raises:
        TypeError: the model has no assignment step.
        ValueError: an input has no ``instances`` (map it with ``is_train=True``).
    """
    return image_assignments(run_assignment(model, batched_inputs, iteration=iteration))


def _image_assignments(inputs, result, level_names, method) -> List[ImageAssignment]:
    """One :class:`ImageAssignment` per image from an assigner's inputs and result."""
    levels = torch.repeat_interleave(
        torch.arange(len(inputs.num_anchors_per_level)),
        torch.as_tensor(inputs.num_anchors_per_level),
    )
    positive = (result.positive_mask(inputs.num_classes) & (result.matched_gt >= 0)).cpu()
    anchors = inputs.anchors.cpu()
    names = level_names or [f"level {k}" for k in range(len(inputs.num_anchors_per_level))]
    out = []
    for i in range(inputs.num_images):
        m, pos = int(inputs.gt_counts[i]), positive[i]
        image_anchors = anchors[i] if anchors.dim() == 3 else anchors  # per-image or shared
        out.append(
            ImageAssignment(
                gt_boxes=inputs.gt_boxes[i, :m].cpu().numpy(),
                gt_classes=inputs.gt_classes[i, :m].cpu().numpy(),
                anchor_boxes=image_anchors[pos].numpy(),
                matched_gt=result.matched_gt[i].cpu()[pos].numpy(),
                anchor_levels=levels[pos].numpy(),
                level_names=names,
                method=method,
            )
        )
    return out


def _location_targets(inputs, result) -> List[LocationTargets]:
    """SAD: per image, the positive locations (target set "locations") and the AC targets of
    their anchors (target set "anchor_cls": label 0 = y_hat, soft targets = mu_hat)."""
    K = inputs.num_classes
    A = inputs.uniform_anchors_per_location("SAD's location picture")
    locations, ac = result.target_sets["locations"], result.target_sets["anchor_cls"]
    loc_pos = (locations.positive_mask(K) & (locations.matched_gt >= 0)).cpu()
    anchor_labels = result.extras.get("anchor_labels", result.labels).cpu()
    mu_hat = ac.soft_targets.float().cpu() if ac.soft_targets is not None else None
    y_hat = (ac.labels == 0).cpu()
    anchors = inputs.batch_anchors().cpu()
    out = []
    for i in range(inputs.num_images):
        q = torch.nonzero(loc_pos[i]).flatten()
        idx = q[:, None] * A + torch.arange(A)[None, :]  # (Q, A): a location's anchors
        boxes = anchors[i][idx]
        mu = mu_hat[i][idx] if mu_hat is not None else y_hat[i][idx].float()
        yh = y_hat[i][idx]
        mu = torch.where(yh, mu, torch.zeros_like(mu))
        lab, loc_lab = anchor_labels[i], locations.labels[i].cpu()
        stats = {
            "positive anchors": int(((lab >= 0) & (lab < K)).sum()),
            "negative anchors": int((lab == K).sum()),
            "positive locations": int(len(q)),
            "negative locations": int((loc_lab == K).sum()),
            "mean mu_hat": float(mu[yh].mean()) if yh.any() else float("nan"),
        }
        out.append(
            LocationTargets(
                centres=((boxes[:, 0, :2] + boxes[:, 0, 2:]) / 2).numpy().reshape(-1, 2),
                matched_gt=locations.matched_gt[i].cpu()[q].numpy(),
                anchor_boxes=boxes.numpy().reshape(-1, A, 4),
                soft_targets=mu.numpy().reshape(-1, A),
                ac_positive=yh.numpy().reshape(-1, A),
                stats=stats,
            )
        )
    return out
