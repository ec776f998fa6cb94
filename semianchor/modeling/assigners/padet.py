"""PADet's two matchings (Tang et al. 2019, Sec. 3.1-3.2): max-IoU on the initial
anchors for the anchor promotion module (APM), then max-IoU on the *promoted* anchors (the
initial anchors moved by the APM's detached deltas) for the detection module, where a negative
whose APM positive probability is below theta is ignored and a positive never is.

Both stages use "best anchor per GT + IoU >= 0.5 positive, < 0.3 negative" (the [0.3, 0.5) band
ignored): Detectron2's ``Matcher`` semantics (all ties of a GT's best IoU kept; SSD keeps one).
Run them as ``StagedAssigner(stages=[("initial", MaxIoUAssigner(...)),
("promoted", PromotedAnchorAssigner(...))])``; the detector passes the APM outputs in
``inputs.extras``: ``apm_regression`` (N, R, 4) deltas and ``apm_scores`` (N, R) probabilities.
"""

import dataclasses
from typing import Dict, Optional, Sequence

import torch

from .base import AssignInputs, AssignResult
from .max_iou import MaxIoUAssigner

__all__ = ["PromotedAnchorAssigner", "promoted_anchors"]


def promoted_anchors(inputs: AssignInputs) -> torch.Tensor:
    """(N, R, 4) the initial anchors decoded with the APM deltas (detached); an anchor whose
    decoded box is not finite stays where it was (it must not poison the IoU matching)."""
    if "apm_regression" not in inputs.extras or inputs.box_coder is None:
        raise ValueError("promoted anchors need inputs.extras['apm_regression'] and a box_coder")
    deltas = inputs.extras["apm_regression"].detach().float()
    boxes = inputs.box_coder.decode(inputs.anchors, deltas, inputs.anchor_strides)
    initial = inputs.batch_anchors().float()
    ok = torch.isfinite(boxes).all(dim=-1, keepdim=True)
    return torch.where(ok, boxes, initial)


class PromotedAnchorAssigner(MaxIoUAssigner):
    """The detection module's matching (module docstring).

    Args:
        thresholds, labels, allow_low_quality_matches: the max-IoU rule (PADet: (0.3, 0.5),
            (0, -1, 1), True).
        promote: match on the promoted anchors (APM_R); False matches the initial anchors.
        theta: ignore a negative whose APM score is below theta (APM_C, 0.01); None disables.
    """

    def __init__(
        self,
        *,
        thresholds: Sequence[float] = (0.3, 0.5),
        labels: Sequence[int] = (0, -1, 1),
        allow_low_quality_matches: bool = True,
        promote: bool = True,
        theta: Optional[float] = 0.01,
    ):
        super().__init__(
            thresholds=thresholds,
            labels=labels,
            allow_low_quality_matches=allow_low_quality_matches,
        )
        if theta is not None and not 0.0 <= theta < 1.0:
            raise ValueError(f"theta must be None or in [0, 1), got {theta}")
        self.promote, self.theta = bool(promote), theta

    def extra_repr(self):
        return f"{super().extra_repr()}, promote={self.promote}, theta={self.theta}"

    def stage_inputs(self, inputs: AssignInputs, previous: Dict[str, AssignResult]) -> AssignInputs:
        if not self.promote:
            return inputs
        return dataclasses.replace(
            inputs, anchors=promoted_anchors(inputs), extras=dict(inputs.extras)
        )

    def assign(self, inputs: AssignInputs) -> AssignResult:
        result = super().assign(inputs)
        if self.theta is None:
            return result
        if "apm_scores" not in inputs.extras:
            raise ValueError("the theta rule needs inputs.extras['apm_scores'] (N, R)")
        K = inputs.num_classes
        easy = (result.labels == K) & (inputs.extras["apm_scores"] < self.theta)
        result.labels = torch.where(easy, torch.full_like(result.labels, -1), result.labels)
        result.extras["theta_ignored"] = easy
        return result
