"""The one label-assignment interface shared by all five methods.

Shape legend used throughout semianchor: N images, R anchors (all levels concatenated, level by
level, in Detectron2's anchor order), M ground-truth boxes per image (padded), K classes,
L pyramid levels, A anchors per location, C candidates per GT.

Label convention (one for every assigner): ``labels`` in {-1: ignore, 0..K-1: positive of that
class, K: background}. ``matched_gt`` is the index (in the padded GT axis) of the GT a positive
anchor is assigned to, -1 otherwise. ``soft_targets`` (optional) is the classification target of
the positive class when it is not 1 (IoU, a quality metric, a cleanliness score) and may be
non-zero for anchors labelled background (a soft negative); ``weights`` (optional) is a per-anchor
loss weight. Assigners never see ``Instances``; they take padded tensors.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

__all__ = [
    "AssignInputs",
    "AssignResult",
    "LabelAssigner",
    "StagedAssigner",
    "TargetSet",
    "pad_gt_instances",
]


@dataclass
class AssignInputs:
    """Everything an assigner may use. Static rules read the first block only.

    Attributes:
        anchors: (R, 4) XYXY anchors shared by the batch, or (N, R, 4) anchors per image (e.g.
            PADet's promoted anchors). Levels concatenated in Detectron2's order.
        num_anchors_per_level: L ints summing to R.
        anchor_strides: (R,) stride of each anchor's level.
        anchors_per_location: A, one int when every level has the same number of anchors per
            location, else L ints A_l (e.g. SSD's 6 and 4).
        gt_boxes: (N, M, 4) padded XYXY GT boxes.
        gt_classes: (N, M) int64 padded GT classes.
        gt_counts: (N,) int64 number of valid GTs per image.
        num_classes: K.
        pred_scores: (N, R, K) predicted class probabilities, detached (dynamic rules).
        pred_regression: (N, R, 4) raw regression outputs, detached (dynamic rules).
        box_coder: the detector's box coder (decodes ``pred_regression``).
        extras: method-specific inputs (e.g. DLA's current alpha, PADet's APM scores, and the
            results of earlier stages under ``"stages"``, see :class:`StagedAssigner`).
    """

    anchors: Tensor
    num_anchors_per_level: List[int]
    anchor_strides: Tensor
    anchors_per_location: Union[int, Sequence[int]]
    gt_boxes: Tensor
    gt_classes: Tensor
    gt_counts: Tensor
    num_classes: int
    pred_scores: Optional[Tensor] = None
    pred_regression: Optional[Tensor] = None
    box_coder: Optional[object] = None
    extras: Dict[str, object] = field(default_factory=dict)

    def __post_init__(self):
        if self.anchors.dim() not in (2, 3) or self.anchors.shape[-1] != 4:
            raise ValueError(
                f"anchors must be (R, 4) or (N, R, 4), got {tuple(self.anchors.shape)}"
            )
        R = self.anchors.shape[-2]
        if sum(int(n) for n in self.num_anchors_per_level) != R:
            raise ValueError(
                f"num_anchors_per_level {list(self.num_anchors_per_level)} does not sum to R = {R}"
            )
        if self.anchors.dim() == 3 and self.anchors.shape[0] != self.gt_boxes.shape[0]:
            raise ValueError(
                f"per-image anchors {tuple(self.anchors.shape)} for {self.gt_boxes.shape[0]} images"
            )
        cells = self.cell_anchors
        if len(cells) != len(self.num_anchors_per_level) or any(
            a < 1 or int(n) % a for a, n in zip(cells, self.num_anchors_per_level)
        ):
            raise ValueError(
                f"anchors_per_location {self.anchors_per_location} does not divide the level "
                f"sizes {list(self.num_anchors_per_level)}"
            )

    @property
    def num_images(self) -> int:
        return self.gt_boxes.shape[0]

    @property
    def num_anchors(self) -> int:
        """R."""
        return self.anchors.shape[-2]

    @property
    def per_image_anchors(self) -> bool:
        return self.anchors.dim() == 3

    @property
    def cell_anchors(self) -> List[int]:
        """A_l: anchors per location of every level."""
        A = self.anchors_per_location
        return (
            [int(A)] * len(self.num_anchors_per_level)
            if isinstance(A, int)
            else [int(a) for a in A]
        )

    def uniform_anchors_per_location(self, rule: str) -> int:
        """A, for rules defined with one anchor count per location (ATSS's k * A candidates)."""
        cells = set(self.cell_anchors)
        if len(cells) > 1:
            raise ValueError(
                f"{rule} needs the same number of anchors per location on every level, "
                f"got {self.cell_anchors}"
            )
        return cells.pop() if cells else 1

    def image_anchors(self, i: int) -> Tensor:
        """(R, 4) anchors of image i."""
        return self.anchors[i] if self.per_image_anchors else self.anchors

    def batch_anchors(self) -> Tensor:
        """(N, R, 4) anchors of every image (a view when they are shared)."""
        if self.per_image_anchors:
            return self.anchors
        return self.anchors[None].expand(self.num_images, -1, -1)

    def anchors_at(self, n_idx: Tensor, r_idx: Tensor) -> Tensor:
        """(.., 4) anchors of (image, anchor) index pairs."""
        return self.anchors[n_idx, r_idx] if self.per_image_anchors else self.anchors[r_idx]

    def location_index(self) -> Tensor:
        """(R,) int64 index of each anchor's location (levels concatenated, A_l anchors of a
        location contiguous, as Detectron2 orders them): location = anchor // A_l within a level."""
        parts, anchor_start, loc_start = [], 0, 0
        device = self.anchor_strides.device
        for n, a in zip(self.num_anchors_per_level, self.cell_anchors):
            parts.append(torch.arange(int(n), device=device) // a + loc_start)
            anchor_start, loc_start = anchor_start + int(n), loc_start + int(n) // a
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64, device=device)

    @property
    def num_locations(self) -> int:
        return sum(int(n) // a for n, a in zip(self.num_anchors_per_level, self.cell_anchors))

    def valid_gt_mask(self) -> Tensor:
        """(N, M) bool: True for real (non-padding) GTs."""
        M = self.gt_boxes.shape[1]
        return torch.arange(M, device=self.gt_boxes.device)[None, :] < self.gt_counts[:, None]

    def decoded_pred_boxes(self) -> Tensor:
        """(N, R, 4) predicted boxes decoded from ``pred_regression``."""
        if self.pred_regression is None or self.box_coder is None:
            raise ValueError(
                "this assigner needs predictions: pred_regression and box_coder are None"
            )
        return self.box_coder.decode(self.anchors, self.pred_regression, self.anchor_strides)


@dataclass
class TargetSet:
    """Training targets of one kind of prediction (per anchor, per location, ...).

    Attributes:
        matched_gt: (N, S) int64, GT index of positives, -1 otherwise.
        labels: (N, S) int64 in {-1 ignore, 0..K-1, K background}.
        soft_targets: (N, S) float or None: target of the labelled class (1 if None).
        weights: (N, S) float or None: per-element loss weight (1 if None).
        num_classes: the set's own class count when it is not the detector's K (e.g. 1 for a
            class-agnostic set: labels {-1, 0, 1}); None: the K passed to :meth:`positive_mask`.
    """

    matched_gt: Tensor
    labels: Tensor
    soft_targets: Optional[Tensor] = None
    weights: Optional[Tensor] = None
    num_classes: Optional[int] = None

    def positive_mask(self, num_classes: int) -> Tensor:
        K = num_classes if self.num_classes is None else self.num_classes
        return (self.labels >= 0) & (self.labels < K)

    def matched_boxes(self, gt_boxes: Tensor) -> Tensor:
        """(N, S, 4) GT box of each element (zeros where unmatched)."""
        idx = self.matched_gt.clamp(min=0)
        boxes = torch.gather(gt_boxes, 1, idx[..., None].expand(-1, -1, 4))
        return boxes * (self.matched_gt >= 0)[..., None].to(boxes.dtype)

    @staticmethod
    def labels_from_matches(matched_gt: Tensor, gt_classes: Tensor, num_classes: int) -> Tensor:
        """The GT's class for matches, K (background) for -1, -1 (ignore) for -2."""
        labels = torch.gather(gt_classes, 1, matched_gt.clamp(min=0))
        labels = torch.where(matched_gt >= 0, labels, torch.full_like(labels, num_classes))
        return torch.where(matched_gt == -2, torch.full_like(labels, -1), labels)

    @classmethod
    def from_matches(cls, matched_gt: Tensor, gt_classes: Tensor, num_classes: int, **kw):
        """Targets from matched GT indices (>= 0 a GT, -1 background, -2 ignore)."""
        labels = cls.labels_from_matches(matched_gt, gt_classes, num_classes)
        return cls(matched_gt=matched_gt.clamp(min=-1), labels=labels, **kw)


@dataclass
class AssignResult(TargetSet):
    """The per-anchor targets of a padded batch (the target set named ``"anchors"``: its fields
    are the :class:`TargetSet` fields of this object), plus any other named target sets.

    Attributes:
        matched_gt, labels, soft_targets, weights: the per-anchor set, (N, R) each.
        extras: method-specific diagnostics (thresholds, metrics...).
        target_sets: further sets by name, e.g. ``"locations"`` (N, R_loc) for detectors that
            classify locations (SAD). ``result["anchors"]`` is the result itself.
        stages: results of the earlier stages of a :class:`StagedAssigner`, by stage name.
        inputs: the inputs this result was computed from when they differ from the detector's
            (set by :class:`StagedAssigner` for every stage: later stages may see other anchors).
    """

    extras: Dict[str, Tensor] = field(default_factory=dict)
    target_sets: Dict[str, TargetSet] = field(default_factory=dict)
    stages: Dict[str, "AssignResult"] = field(default_factory=dict)
    inputs: Optional[AssignInputs] = None

    def __getitem__(self, name: str) -> TargetSet:
        if name == "anchors":
            return self
        if name not in self.target_sets:
            raise KeyError(f"no target set {name!r}; this result has {self.names}")
        return self.target_sets[name]

    @property
    def names(self) -> List[str]:
        return ["anchors", *self.target_sets]


class LabelAssigner:
    """Base class of all assigners: plain callables, hyper-parameters in ``__init__``.

    Subclasses implement :meth:`assign`; ``requires_predictions`` tells the detector whether to
    fill ``pred_scores``/``pred_regression`` (always detached: assignment is not differentiated).
    An assigner used as a later stage of a :class:`StagedAssigner` may override
    :meth:`stage_inputs` to derive its inputs from the earlier stages' results.
    """

    requires_predictions: bool = False

    @torch.no_grad()
    def __call__(self, inputs: AssignInputs) -> AssignResult:
        if self.requires_predictions and (
            inputs.pred_scores is None or inputs.pred_regression is None
        ):
            raise ValueError(f"{type(self).__name__} needs pred_scores and pred_regression")
        result = self.assign(inputs)
        N, R = inputs.num_images, inputs.num_anchors
        if result.labels.shape != (N, R) or result.matched_gt.shape != (N, R):
            raise RuntimeError(
                f"{type(self).__name__} returned labels {tuple(result.labels.shape)}, "
                f"expected {(N, R)}"
            )
        for name, ts in result.target_sets.items():
            if ts.labels.shape[0] != N or ts.labels.shape != ts.matched_gt.shape:
                raise RuntimeError(f"{type(self).__name__}: target set {name!r} is not (N, S)")
        return result

    def assign(self, inputs: AssignInputs) -> AssignResult:
        raise NotImplementedError

    def stage_inputs(self, inputs: AssignInputs, previous: Dict[str, AssignResult]) -> AssignInputs:
        """The inputs of this assigner when it runs after other stages (default: unchanged)."""
        return inputs

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class StagedAssigner(LabelAssigner):
    """Several assignment stages in one training step (e.g. PADet: max-IoU on the initial
    anchors, then on the anchors the first module promoted). Stage i runs on
    ``assigner_i.stage_inputs(inputs, results of stages < i)``; the result is the last stage's,
    with every earlier stage's result in ``result.stages[name]``.

    Args:
        stages: ordered (name, assigner) pairs (a dict keeps its order).
    """

    def __init__(self, *, stages):
        stages = list(stages.items()) if isinstance(stages, dict) else [tuple(s) for s in stages]
        if not stages:
            raise ValueError("StagedAssigner needs at least one stage")
        names = [n for n, _ in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        self.stages = stages

    @property
    def requires_predictions(self) -> bool:
        return any(a.requires_predictions for _, a in self.stages)

    def extra_repr(self):
        return ", ".join(f"{n}={a!r}" for n, a in self.stages)

    def assign(self, inputs: AssignInputs) -> AssignResult:
        done: Dict[str, AssignResult] = {}
        for name, assigner in self.stages:
            stage_in = assigner.stage_inputs(inputs, dict(done))
            done[name] = assigner(stage_in)
            done[name].inputs = stage_in
        last = done.pop(self.stages[-1][0])
        last.stages = done
        return last


def pad_gt_instances(gt_instances, device=None):
    """Pads a list of ``Instances`` (gt_boxes, gt_classes) into (N, M, 4), (N, M), (N,) tensors.

    Raises ValueError naming the image when a GT box is non-finite or has x2 < x1 / y2 < y1
    (nothing is silently dropped; zero-area boxes are legal and simply never become positives).
    """
    N = len(gt_instances)
    counts = [len(x) for x in gt_instances]
    M = max(counts + [0])
    if device is None:
        device = gt_instances[0].gt_boxes.tensor.device if N else torch.device("cpu")
    boxes = torch.zeros((N, max(M, 1), 4), dtype=torch.float32, device=device)
    classes = torch.zeros((N, max(M, 1)), dtype=torch.int64, device=device)
    for i, inst in enumerate(gt_instances):
        if counts[i] == 0:
            continue
        b = inst.gt_boxes.tensor.to(device=device, dtype=torch.float32)
        if not torch.isfinite(b).all():
            raise ValueError(
                f"image {i} of the batch has a non-finite GT box: "
                f"{b[~torch.isfinite(b).all(1)][:3]}"
            )
        if ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any():
            bad = b[(b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])][:3]
            raise ValueError(f"image {i} of the batch has GT boxes with x2 < x1 or y2 < y1: {bad}")
        boxes[i, : counts[i]] = b
        classes[i, : counts[i]] = inst.gt_classes.to(device)
    return boxes, classes, torch.as_tensor(counts, dtype=torch.int64, device=device)
