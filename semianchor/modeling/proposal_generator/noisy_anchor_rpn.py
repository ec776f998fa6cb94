"""Noisy-Anchor RPN: cleanliness soft labels and re-weighting on Detectron2's RPN ("Learning from
Noisy Anchors", Sec. 5.3, Tables 5-6).

Everything but the training targets is Detectron2's ``RPN``. Of its extension points,
:meth:`label_and_sample_anchors` does the static part (GTs padded into :class:`AssignInputs`) and
:meth:`losses`, the first to see the predictions a dynamic assigner needs, runs the assigner
(objectness as one class), Detectron2's sampling (the paper does not say whether it sampled), and
with S the sampled anchors and r re-normalised to mean 1 over the sampled positives:

    loss_rpn_cls = sum_S r * BCE(p, c) / (batch_size_per_image * N)      (A_neg: c = 0, r = 1)
    loss_rpn_loc = sum_{S and A_pos} r * box_loss / (batch_size_per_image * N)

Shape legend: N images, R anchors (levels concatenated), M padded GTs.
"""

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

from ..anchors import generator_assign_inputs
from ..assigners import AssignInputs, AssignResult, LabelAssigner
from ..assigners.build import build_assigner
from ..assigners.cleanliness import normalize_to_unit_mean
from ..box_coder import DeltaBoxCoder
from ..losses import cleanliness_focal_loss, iou_loss, smooth_l1_loss

__all__ = ["NoisyAnchorRPN"]


@PROPOSAL_GENERATOR_REGISTRY.register()
class NoisyAnchorRPN(RPN):
    """Detectron2's ``RPN`` trained with cleanliness soft labels and re-weighting (module doc).

    Args:
        assigner: a :class:`CleanlinessAssigner` (any :class:`LabelAssigner` with one class works).
        anchor_matcher: unused (accepted so an ``RPN`` config converts by changing its target).
        everything else: as Detectron2's ``RPN``; ``box_reg_loss_type`` "smooth_l1" or "giou".
    """

    @configurable
    def __init__(
        self, *, assigner: LabelAssigner, anchor_matcher: Optional[Matcher] = None, **kwargs
    ):
        super().__init__(anchor_matcher=anchor_matcher, **kwargs)
        if self.box_reg_loss_type not in ("smooth_l1", "giou"):
            raise ValueError(
                "NoisyAnchorRPN supports box_reg_loss_type smooth_l1|giou, "
                f"got {self.box_reg_loss_type!r}"
            )
        self.assigner = assigner
        t = self.box2box_transform
        # the assigner decodes with the kernels: the same parameterisation as Box2BoxTransform
        self.box_coder = DeltaBoxCoder(weights=tuple(t.weights), scale_clamp=t.scale_clamp)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        if "SEMIANCHOR" not in cfg.MODEL:
            raise KeyError(
                "NoisyAnchorRPN reads MODEL.SEMIANCHOR: "
                "call semianchor.config.add_semianchor_config(cfg)"
            )
        ret = super().from_config(cfg, input_shape)
        ret.pop("anchor_matcher")
        ret["assigner"] = build_assigner(cfg, name=cfg.MODEL.SEMIANCHOR.RPN.ASSIGNER_NAME)
        return ret

    @torch.no_grad()
    def label_and_sample_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]):
        """The static part of the labelling: the assigner's inputs without predictions (the
        cleanliness needs them; :meth:`losses` adds them, assigns and samples). Returns
        ``(inputs, gt_instances)`` in place of Detectron2's ``(gt_labels, matched_gt_boxes)``."""
        inputs = generator_assign_inputs(
            self.anchor_generator,
            anchors,
            gt_instances,
            num_classes=1,
            class_agnostic=True,  # objectness: one class
            box_coder=self.box_coder,
        )
        return inputs, gt_instances

    @torch.no_grad()
    def sampled_targets(self, inputs: AssignInputs, gt_instances: List[Instances], result):
        """Detectron2's RPN labels {1, 0, -1} from the assignment, boundary rule and sampling;
        returns the positive and contributing masks (N, R), soft targets and weights r."""
        labels = (result.labels == 0).to(torch.int64)
        labels[result.labels < 0] = -1
        if self.anchor_boundary_thresh >= 0:  # legacy option of RPN, kept
            for i, inst in enumerate(gt_instances):
                inside = Boxes(inputs.anchors).inside_box(
                    inst.image_size, self.anchor_boundary_thresh
                )
                labels[i][~inside] = -1
        for i in range(labels.shape[0]):
            labels[i] = self._subsample_labels(labels[i])
        pos = labels == 1
        targets = pos.float()
        if result.soft_targets is not None:
            targets = torch.where(pos, result.soft_targets, torch.zeros_like(targets))
        r = None if result.weights is None else normalize_to_unit_mean(result.weights, pos)
        return pos, labels >= 0, targets, r

    def assign(
        self, inputs: AssignInputs, logits: Tensor, deltas: Tensor
    ) -> Tuple[AssignInputs, AssignResult]:
        """The label assignment of one step, before Detectron2's sampling: ``inputs`` (from
        :meth:`label_and_sample_anchors`) with, for a dynamic rule, the detached predictions
        (objectness probability as one class, (N, R) ``logits`` and (N, R, 4) ``deltas``), and
        the assigner's result. :meth:`losses` calls it; so do the report and the analysis."""
        if self.assigner.requires_predictions:
            inputs.pred_scores = torch.sigmoid(logits.detach().float())[..., None]
            inputs.pred_regression = deltas.detach().float()
        return inputs, self.assigner(inputs)

    def losses(self, anchors, pred_objectness_logits, inputs, pred_anchor_deltas, gt_instances):
        """Assignment on the predictions, sampling, then the losses of the module docstring.
        Arguments as Detectron2's ``RPN.losses``, with ``label_and_sample_anchors``'s outputs."""
        logits = cat(pred_objectness_logits, dim=1)  # (N, R)
        deltas = cat(pred_anchor_deltas, dim=1)  # (N, R, 4)
        inputs, result = self.assign(inputs, logits, deltas)
        pos, valid, targets, r = self.sampled_targets(inputs, gt_instances, result)

        bce = cleanliness_focal_loss(logits[valid], targets[valid], alpha=-1.0, gamma=0.0)
        if r is not None:
            bce = bce * r[valid]
        n_idx, r_idx = pos.nonzero(as_tuple=True)
        gt_pos = inputs.gt_boxes[n_idx, result.matched_gt[n_idx, r_idx]]
        reg = deltas[n_idx, r_idx].float()
        anchors_pos, strides_pos = inputs.anchors[r_idx], inputs.anchor_strides[r_idx]
        if self.box_reg_loss_type == "smooth_l1":
            target = self.box_coder.encode(anchors_pos, gt_pos, strides_pos)
            loc = smooth_l1_loss(reg, target, self.smooth_l1_beta).sum(-1)
        else:
            decoded = self.box_coder.decode(anchors_pos[None], reg[None], strides_pos)[0]
            loc = iou_loss(decoded, gt_pos, "giou")
        if r is not None:
            loc = loc * r[pos]

        self._log(result, pos, valid, logits.shape[0])
        normalizer = self.batch_size_per_image * logits.shape[0]
        losses = {"loss_rpn_cls": bce.sum() / normalizer, "loss_rpn_loc": loc.sum() / normalizer}
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    @staticmethod
    def _log(result, pos: Tensor, valid: Tensor, num_images: int) -> None:
        try:
            storage = get_event_storage()
        except AssertionError:  # outside a trainer
            return
        storage.put_scalar("rpn/num_pos_anchors", float(pos.sum()) / num_images)
        storage.put_scalar("rpn/num_neg_anchors", float((valid & ~pos).sum()) / num_images)
        if int(pos.sum()) and "cleanliness" in result.extras:
            storage.put_scalar(
                "rpn/mean_cleanliness", float(result.extras["cleanliness"][pos].mean())
            )
