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
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..modeling.anchors import anchor_strides
from ..modeling.assigners import AssignInputs, AssignResult, pad_gt_instances

__all__ = ["Assignment", "assignment_kind", "is_static", "run_assignment"]


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
    from detectron2.structures import Boxes

    features = [features[f] for f in model.head_in_features]
    anchors = model.anchor_generator(features)
    gt_labels, matched_boxes = model.label_anchors(anchors, gt_instances)
    nums = [len(a) for a in anchors]
    all_anchors = Boxes.cat(anchors).tensor
    gt_boxes, gt_classes, gt_counts = pad_gt_instances(gt_instances, all_anchors.device)
    K = model.num_classes
    labels = torch.stack([lab.to(torch.int64) for lab in gt_labels])  # (N, R)
    matched = torch.full_like(labels, -1)
    for i, boxes in enumerate(matched_boxes):
        m = int(gt_counts[i])
        pos = (labels[i] >= 0) & (labels[i] < K)
        if m and pos.any():
            same = (boxes[pos][:, None, :] == gt_boxes[i, :m][None]).all(dim=2)  # (P, M)
            matched[i, pos] = same.float().argmax(dim=1)
    inputs = AssignInputs(
        anchors=all_anchors,
        num_anchors_per_level=nums,
        anchor_strides=anchor_strides(model.anchor_generator, nums, all_anchors.device),
        anchors_per_location=list(model.anchor_generator.num_cell_anchors),
        gt_boxes=gt_boxes,
        gt_classes=gt_classes,
        gt_counts=gt_counts,
        num_classes=K,
    )
    return Assignment(
        inputs=inputs,
        result=AssignResult(matched_gt=matched, labels=labels),
        level_names=_level_names(model.head_in_features, len(nums)),
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
