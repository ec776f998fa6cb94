"""ATSS: Adaptive Training Sample Selection (Zhang et al., CVPR 2020, Algorithm 1)."""

from ...layers import atss_candidate_stats
from .base import AssignInputs, AssignResult, LabelAssigner

__all__ = ["ATSSAssigner"]


class ATSSAssigner(LabelAssigner):
    """Per GT: on each level the ``topk * A`` anchors with the nearest centres (fewer if the level
    is smaller) are candidates; threshold = mean + std (Bessel) of their IoUs; a candidate is
    positive iff IoU >= threshold and its centre lies inside the GT (min distance to a side
    > ``center_eps``); an anchor claimed by several GTs goes to the highest IoU (ties: lowest GT
    index). Everything else is background; a GT may end with no positive. The work is done by
    the compiled ``atss_candidate_stats`` op (see its docstring for every rule and deviation).

    Args:
        topk: k, candidates per level per anchor-per-location (paper: 9).
        center_eps: margin of the centre-inside-GT test (official code: 0.01).
    """

    def __init__(self, *, topk: int = 9, center_eps: float = 0.01):
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = int(topk)
        self.center_eps = float(center_eps)

    def extra_repr(self):
        return f"topk={self.topk}, center_eps={self.center_eps}"

    def candidate_stats(self, inputs: AssignInputs, scores=None):
        """The ATSS rule on ``inputs`` with the candidates' IoU, or with ``scores`` (a (N, M, C)
        tensor or a callable, see ``atss_candidate_stats``; DLA's metric)."""
        return atss_candidate_stats(
            inputs.anchors,
            inputs.num_anchors_per_level,
            inputs.gt_boxes,
            inputs.gt_counts,
            topk=self.topk,
            anchors_per_location=inputs.uniform_anchors_per_location(type(self).__name__),
            scores=scores,
            center_eps=self.center_eps,
        )

    def assign(self, inputs: AssignInputs) -> AssignResult:
        matched, score, threshold, cand_idx = self.candidate_stats(inputs)
        return AssignResult.from_matches(
            matched,
            inputs.gt_classes,
            inputs.num_classes,
            extras={"score": score, "threshold": threshold, "candidates": cand_idx},
        )
