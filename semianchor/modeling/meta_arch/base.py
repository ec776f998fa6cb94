"""The shared dense-detector base: anchors -> LabelAssigner -> losses; per-level top-k inference.

A method overrides only what differs. The pieces, each a method with
today's common behaviour as its default:

* the head's declaration (``head.outputs``: per output its width and whether it is predicted per
  anchor or per location) drives :meth:`AssignmentDetector.flatten_predictions` and inference;
* assignment: :meth:`~AssignmentDetector.assign` (the public step, as Detectron2's
  ``label_anchors``: inputs and result), the ``assigner`` argument (a :class:`StagedAssigner` for
  several stages per step), :meth:`~AssignmentDetector.prediction_scores` and
  :meth:`~AssignmentDetector.assign_inputs_extras` for what dynamic rules see;
* losses: :meth:`~AssignmentDetector.classification_loss` (its element-wise function
  :meth:`~AssignmentDetector.classification_loss_fn`: sigmoid focal with soft targets, or softmax
  cross-entropy), :meth:`~AssignmentDetector.box_loss`,
  :meth:`~AssignmentDetector.auxiliary_losses` (centerness here; DLA's metric, SAD's anchor
  classification in their files), each normalised by
  :meth:`~AssignmentDetector.positives_normalizer` of the target set it trains on;
* inference: :meth:`~AssignmentDetector.level_scores` (test-time score composition) and
  :meth:`~AssignmentDetector.nms` (batched NMS; another op such as soft-NMS by override).

Shape legend: N images, R anchors (levels concatenated), R_loc locations, M padded GTs,
K classes, L levels, A_l anchors per location on level l, P positive anchors in the batch.
"""

import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, batched_nms, cat
from detectron2.modeling.backbone import Backbone, build_backbone
from detectron2.modeling.meta_arch.dense_detector import DenseDetector, permute_to_N_HWA_K
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

from ..anchors import build_semianchor_anchor_generator, generator_assign_inputs
from ..assigners import AssignInputs, AssignResult, LabelAssigner, TargetSet
from ..assigners.build import build_assigner
from ..box_coder import build_box_coder
from ..heads.dense_head import DenseHead, HeadOutput
from ..losses import centerness_targets, focal_loss, iou_loss, smooth_l1_loss

__all__ = ["AssignmentDetector", "SCORE_MODES", "centerness_targets"]

logger = logging.getLogger(__name__)

CLS_LOSSES = ("sigmoid_focal", "softmax_ce")
BOX_LOSSES = ("giou", "iou", "log_iou", "smooth_l1")
# Every test-time score a detector may rank by (:meth:`AssignmentDetector.level_scores`), with
# the head output it reads besides "cls": p_cls alone; p_cls times the quality branch (ATSS/FCOS's
# centerness), or its square root; DLA's predicted metric m (Sec. 3.3), p_cls * m or its root.
# A detector declares the subset it implements in ``score_modes``.
SCORE_MODES = {
    "cls": None,
    "sqrt_cls_quality": "quality",
    "cls_quality": "quality",
    "metric": "metric",
    "cls_metric": "metric",
    "sqrt_cls_metric": "metric",
}
_WEIGHT_NORMALIZER_NAMES = {
    "centerness": "loss_normalizer_centerness",
    "assigner": "loss_normalizer_weights",
}


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


class AssignmentDetector(DenseDetector):
    """A one-stage detector whose training is ``anchors -> assigner -> losses``.

    Default losses (keys ``loss_<prefix>_<term>``): classification over non-ignored elements of
    the cls output's target set (soft targets if the assigner gives them); box loss on positive
    anchors (IoU family on decoded boxes, or smooth-L1 on encoded targets); BCE on the centerness
    branch when the head has one. Normalised by an EMA of the number of positives (Detectron2's
    RetinaNet/FCOS convention) or, for weighted box losses, of the weights' sum.
    """

    loss_prefix = "dense"
    # the test-time scores this detector's level_scores implements (keys of SCORE_MODES)
    score_modes: Tuple[str, ...] = ("cls", "sqrt_cls_quality", "cls_quality")

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        head_in_features: Optional[List[str]] = None,
        anchor_generator: nn.Module,
        box_coder,
        assigner: LabelAssigner,
        num_classes: int,
        classification_loss: str = "sigmoid_focal",
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        cls_loss_weighting: str = "none",
        box_loss_type: str = "giou",
        smooth_l1_beta: float = 0.0,
        box_loss_weight: float = 1.0,
        box_loss_weighting: str = "none",
        box_loss_normalizer: str = "weights",
        quality_loss_weight: float = 1.0,
        score_mode: str = "cls",
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        max_detections_per_image: int = 100,
        loss_normalizer_momentum: float = 0.9,
        pixel_mean: Tuple[float, ...] = (103.530, 116.280, 123.675),
        pixel_std: Tuple[float, ...] = (1.0, 1.0, 1.0),
        vis_period: int = 0,
        input_format: str = "BGR",
    ):
        """
        Args:
            backbone, head_in_features, pixel_mean, pixel_std: as Detectron2's DenseDetector.
            head: ``head(features)`` returns ``{name: [(N, C, Hi, Wi)] * L}`` as declared by
                ``head.outputs`` (:class:`HeadOutput`; a head with only ``output_dims`` is taken
                as all per anchor); "cls" and "reg" are required.
            anchor_generator: Detectron2 anchor generator; levels may differ in A_l.
            box_coder: :class:`DeltaBoxCoder` or :class:`LTRBBoxCoder`.
            assigner: a :class:`LabelAssigner`.
            classification_loss: "sigmoid_focal" (K logits, soft targets, ``focal_loss_*``) or
                "softmax_ce" (K + 1 logits, background last).
            cls_loss_weighting: "none" or "assigner" (positives' classification loss times the
                assigner's weights; negatives 1).
            box_loss_type: "giou", "iou" (1 - IoU), "log_iou" (-ln IoU, UnitBox; on decoded
                boxes) or "smooth_l1" (on encoded targets).
            box_loss_weighting: "none", "centerness" (ATSS: the centerness target) or
                "assigner" (the assigner's weights).
            box_loss_normalizer: with a weighting, "weights" (EMA of the weights' sum) or
                "positives" (EMA of the positive count, as the unweighted loss).
            score_mode: test-time score, one of the class's ``score_modes`` (here: "cls", the
                class probability; "sqrt_cls_quality", sqrt(p_cls * p_quality), ATSS/FCOS;
                "cls_quality", the product); the head must have the output it reads
                (``SCORE_MODES``).
        """
        super().__init__(
            backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        _check_choice("classification_loss", classification_loss, CLS_LOSSES)
        _check_choice("cls_loss_weighting", cls_loss_weighting, ("none", "assigner"))
        _check_choice("box_loss_type", box_loss_type, BOX_LOSSES)
        _check_choice("box_loss_weighting", box_loss_weighting, ("none", "centerness", "assigner"))
        _check_choice("box_loss_normalizer", box_loss_normalizer, ("weights", "positives"))
        unknown = set(self.score_modes) - set(SCORE_MODES)
        if unknown:
            raise TypeError(f"{type(self).__name__}.score_modes has undeclared modes {unknown}")
        _check_choice("score_mode", score_mode, self.score_modes)
        outputs = self.head_outputs
        if "cls" not in outputs or "reg" not in outputs:
            raise ValueError("the head must declare at least the outputs 'cls' and 'reg'")
        score_output = SCORE_MODES[score_mode]
        if score_output is not None and score_output not in outputs:
            raise ValueError(
                f"score_mode={score_mode!r} needs a head with a {score_output!r} output"
                + (" (a quality branch)" if score_output == "quality" else "")
            )
        if box_loss_weighting == "centerness" and "quality" not in outputs:
            raise ValueError("centerness weighting needs a head with a quality branch")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(
                f"num_classes must be an int >= 1, got {num_classes!r} (None in a COCO-json config "
                "means 'from the json': semianchor.engine.classes.resolve_num_classes sets it)"
            )
        cls_width = num_classes + (classification_loss == "softmax_ce")
        if outputs["cls"].dim != cls_width:
            raise ValueError(
                f"{classification_loss} needs {cls_width} cls outputs, "
                f"the head has {outputs['cls'].dim}"
            )
        head_anchors = getattr(head, "num_anchors", None)
        cells = list(anchor_generator.num_cell_anchors)
        if (
            head_anchors is not None
            and list(
                head_anchors
                if isinstance(head_anchors, (list, tuple))
                else [head_anchors] * len(cells)
            )
            != cells
        ):
            raise ValueError(
                f"head predicts {head_anchors} anchors per location, anchor generator makes {cells}"
            )
        self.num_classes = num_classes
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.assigner = assigner
        self.classification_loss_type = classification_loss
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.cls_loss_weighting = cls_loss_weighting
        self.box_loss_type = box_loss_type
        self.smooth_l1_beta = smooth_l1_beta
        self.box_loss_weight = box_loss_weight
        self.box_loss_weighting = box_loss_weighting
        self.box_loss_normalizer = box_loss_normalizer
        self.quality_loss_weight = quality_loss_weight
        self.score_mode = score_mode
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.loss_normalizer_momentum = loss_normalizer_momentum
        self.vis_period = vis_period
        self.input_format = input_format
        self._step_normalizers: Dict[str, float] = {}
        self._logged_normalizers: Dict[str, float] = {}

    # ------------------------------------------------------------------ config
    @classmethod
    def from_config(cls, cfg):
        sa = cfg.MODEL.SEMIANCHOR
        backbone = build_backbone(cfg)
        backbone_shape = backbone.output_shape()
        feature_shapes = [backbone_shape[f] for f in sa.IN_FEATURES]
        return {
            "backbone": backbone,
            "head": cls.head_from_config(cfg, feature_shapes),
            "head_in_features": sa.IN_FEATURES,
            "anchor_generator": build_semianchor_anchor_generator(cfg, feature_shapes),
            "box_coder": build_box_coder(sa.BOX_CODER.NAME, sa.BOX_CODER.WEIGHTS),
            "assigner": build_assigner(cfg),
            "num_classes": sa.NUM_CLASSES,
            "classification_loss": sa.LOSS.CLS_TYPE,
            "focal_loss_alpha": sa.LOSS.FOCAL_ALPHA,
            "focal_loss_gamma": sa.LOSS.FOCAL_GAMMA,
            "cls_loss_weighting": sa.LOSS.CLS_WEIGHTING,
            "box_loss_type": sa.LOSS.BOX_TYPE,
            "smooth_l1_beta": sa.LOSS.SMOOTH_L1_BETA,
            "box_loss_weight": sa.LOSS.BOX_WEIGHT,
            "box_loss_weighting": sa.LOSS.BOX_WEIGHTING,
            "box_loss_normalizer": sa.LOSS.BOX_NORMALIZER,
            "quality_loss_weight": sa.LOSS.QUALITY_WEIGHT,
            "loss_normalizer_momentum": sa.LOSS.NORMALIZER_MOMENTUM,
            "score_mode": sa.TEST.SCORE_MODE,
            "test_score_thresh": sa.TEST.SCORE_THRESH,
            "test_topk_candidates": sa.TEST.TOPK_CANDIDATES,
            "test_nms_thresh": sa.TEST.NMS_THRESH,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "vis_period": cfg.VIS_PERIOD,
            "input_format": cfg.INPUT.FORMAT,
        }

    @classmethod
    def head_from_config(cls, cfg, feature_shapes: List[ShapeSpec]) -> nn.Module:
        return DenseHead(cfg, feature_shapes)

    # ------------------------------------------------------------------ layout of the outputs
    @property
    def head_outputs(self) -> Dict[str, HeadOutput]:
        """The head's declaration (a head with only ``output_dims``: everything per anchor)."""
        outputs = getattr(self.head, "outputs", None)
        if outputs is None:
            outputs = {k: HeadOutput(d) for k, d in getattr(self.head, "output_dims", {}).items()}
        return outputs

    @property
    def anchors_per_location(self) -> Union[int, List[int]]:
        """A (one int when every level has the same count), else the per-level A_l."""
        cells = list(self.anchor_generator.num_cell_anchors)
        return cells[0] if len(set(cells)) == 1 else cells

    def target_set_of(self, output: str) -> str:
        """Name of the target set an output trains on: "anchors" or "locations"."""
        return self.head_outputs[output].per + "s"

    def flatten_predictions(self, predictions: Dict[str, List[Tensor]]) -> Dict[str, Tensor]:
        """{name: [(N, C, Hi, Wi)] * L} -> {name: (N, R, d)} (per anchor, Detectron2's anchor
        order) or (N, R_loc, d) (per location)."""
        outputs = self.head_outputs
        return {
            k: cat([permute_to_N_HWA_K(x, outputs[k].dim) for x in v], dim=1)
            for k, v in predictions.items()
        }

    def to_anchors(self, x: Tensor, inputs: AssignInputs) -> Tensor:
        """(N, R_loc, d) per-location values -> (N, R, d) per anchor (each anchor its
        location's)."""
        return x[:, inputs.location_index()]

    # ------------------------------------------------------------------ assignment
    def build_assign_inputs(
        self,
        anchors: Union[List[Boxes], Tensor],
        preds: Dict[str, Tensor],
        gt_instances: List[Instances],
        num_anchors_per_level: Optional[List[int]] = None,
    ) -> AssignInputs:
        """Assigner inputs from the generator's per-level anchors, or from a (R, 4) / (N, R, 4)
        tensor (per-image anchors) with ``num_anchors_per_level``."""
        inputs = generator_assign_inputs(
            self.anchor_generator,
            anchors,
            gt_instances,
            self.num_classes,
            box_coder=self.box_coder,
            num_anchors_per_level=num_anchors_per_level,
        )
        if self.assigner.requires_predictions:
            inputs.pred_scores = self.prediction_scores(preds, inputs).detach().float()
            inputs.pred_regression = preds["reg"].detach().float()
        inputs.extras.update(self.assign_inputs_extras(preds))
        return inputs

    def prediction_scores(self, preds: Dict[str, Tensor], inputs: AssignInputs) -> Tensor:
        """(N, R, K) class probabilities that dynamic assigners see (per anchor)."""
        if self.classification_loss_type == "softmax_ce":
            scores = torch.softmax(preds["cls"], dim=-1)[..., : self.num_classes]
        else:
            scores = torch.sigmoid(preds["cls"])
        return (
            self.to_anchors(scores, inputs) if self.target_set_of("cls") == "locations" else scores
        )

    def assign_inputs_extras(self, preds: Dict[str, Tensor]) -> Dict[str, object]:
        """Method-specific assigner inputs (e.g. DLA's alpha). Default: none."""
        return {}

    def assign(
        self,
        anchors: List[Boxes],
        preds: Dict[str, Tensor],
        gt_instances: List[Instances],
    ) -> Tuple[AssignInputs, AssignResult]:
        """The label assignment of one training step (as Detectron2's ``label_anchors``).

        Args:
            anchors: the anchor generator's per-level anchors of the batch.
            preds: the flattened predictions (:meth:`flatten_predictions`); dynamic rules see
                them detached, static rules ignore them.
            gt_instances: per image, ``Instances`` with ``gt_boxes`` and ``gt_classes``.

        Returns:
            ``(inputs, result)``: the assigner's inputs (:meth:`build_assign_inputs`) and its
            :class:`AssignResult`. A staged assigner's later stages may run on other inputs
            (e.g. promoted anchors): those are ``result.inputs`` / ``result.stages[name].inputs``.

        :meth:`forward_training` calls it and computes the losses from what it returns; the
        end-of-training report, ``tools/visualize_assignment.py`` and the assignment analysis
        call it to look at the assignment without computing losses.
        """
        inputs = self.build_assign_inputs(anchors, preds, gt_instances)
        return inputs, self.assigner(inputs)

    def forward_training(self, images, features, predictions, gt_instances):
        anchors = self.anchor_generator(features)
        preds = self.flatten_predictions(predictions)
        inputs, result = self.assign(anchors, preds, gt_instances)
        self.log_assignment(inputs, result)
        return self.losses(inputs, preds, result)

    def log_assignment(self, inputs: AssignInputs, result: AssignResult) -> None:
        """Positives per image and per GT (``num_pos_anchors``, ``num_pos_per_gt``)."""
        num_pos = int(result.positive_mask(self.num_classes).sum())
        num_gt = int(inputs.gt_counts.sum())
        try:
            storage = get_event_storage()
        except AssertionError:  # called outside a trainer (tests, notebooks)
            return
        storage.put_scalar("num_pos_anchors", num_pos / inputs.num_images)
        storage.put_scalar("num_pos_per_gt", num_pos / max(num_gt, 1))

    def ema_normalizer(self, value: float, name: str = "loss_normalizer") -> float:
        """EMA (per process, as Detectron2's RetinaNet/FCOS) of a loss normaliser, at least 1;
        kept for this step's log (:meth:`log_normalizers`)."""
        value = self._ema_update(name, max(value, 1.0), 100, momentum=self.loss_normalizer_momentum)
        self._logged_normalizers[name] = value
        return value

    def positives_normalizer(
        self,
        result: AssignResult,
        target_set: str = "anchors",
        name: Optional[str] = None,
        inputs: Optional[AssignInputs] = None,
    ) -> float:
        """EMA (named ``name``; default "loss_normalizer" for the anchors, else
        "loss_normalizer_<set>") of the positive count of a target set, updated once per step:
        every loss term normalised by the same count reads the same value. Give the results of
        other stages their own ``name``. ``inputs``: the step's assigner inputs, for a method
        whose count is taken on the anchors and GTs themselves (the base's losses pass them)."""
        name = name or (
            "loss_normalizer" if target_set == "anchors" else f"loss_normalizer_{target_set}"
        )
        if name not in self._step_normalizers:
            num_pos = float(result[target_set].positive_mask(self.num_classes).sum())
            self._step_normalizers[name] = self.ema_normalizer(num_pos, name)
        return self._step_normalizers[name]

    # ------------------------------------------------------------------ losses
    def losses(
        self, inputs: AssignInputs, preds: Dict[str, Tensor], result: AssignResult
    ) -> Dict[str, Tensor]:
        """classification + box + auxiliary terms (each a hook). A staged assigner's last stage
        may have its own inputs (e.g. promoted anchors): those are used when present."""
        self._step_normalizers, self._logged_normalizers = {}, {}
        inputs = result.inputs if result.inputs is not None else inputs
        losses = self.classification_loss(inputs, preds, result)
        losses.update(self.box_loss(inputs, preds, result))
        losses.update(self.auxiliary_losses(inputs, preds, result))
        self.log_normalizers()
        return losses

    def log_normalizers(self) -> None:
        """This step's loss normalisers (the EMA values the losses were divided by) as
        ``<loss_prefix>/<name>``: ``loss_normalizer`` (the positives' count, or the method's
        choice), ``loss_normalizer_weights`` (the box weights' sum), ``loss_normalizer_<set>`` (a
        target set's or a stage's): what sets each loss's scale."""
        try:
            storage = get_event_storage()
        except AssertionError:  # called outside a trainer (tests, notebooks)
            return
        for name, value in self._logged_normalizers.items():
            storage.put_scalar(f"{self.loss_prefix}/{name}", value)

    def classification_targets(self, result: TargetSet) -> Tuple[Tensor, Tensor]:
        """(N, S, K) float targets and (N, S) bool mask of elements that contribute."""
        K = self.num_classes
        valid = result.labels >= 0
        onehot = F.one_hot(result.labels.clamp(min=0), K + 1)[..., :K].float()
        if result.soft_targets is not None:
            onehot = onehot * result.soft_targets[..., None]
        return onehot, valid

    def classification_loss_fn(self, logits: Tensor, targets: Tensor, labels: Tensor) -> Tensor:
        """Element-wise loss of V contributing elements: logits (V, K) or (V, K + 1), one-hot
        (soft) targets (V, K), labels (V,) -> (V, K) or (V, 1)."""
        if self.classification_loss_type == "softmax_ce":
            return F.cross_entropy(logits.float(), labels, reduction="none")[:, None]
        return focal_loss(logits, targets, self.focal_loss_alpha, self.focal_loss_gamma)

    def classification_loss(
        self, inputs: AssignInputs, preds: Dict[str, Tensor], result: AssignResult
    ) -> Dict[str, Tensor]:
        set_name = self.target_set_of("cls")
        ts = result[set_name]
        targets, valid = self.classification_targets(ts)
        loss = self.classification_loss_fn(preds["cls"][valid], targets[valid], ts.labels[valid])
        if self.cls_loss_weighting == "assigner" and ts.weights is not None:
            pos = ts.positive_mask(self.num_classes)
            loss = loss * torch.where(pos, ts.weights, torch.ones_like(ts.weights))[valid][:, None]
        return {
            f"loss_{self.loss_prefix}_cls": loss.sum()
            / self.positives_normalizer(result, set_name, inputs=inputs)
        }

    def box_losses(self, inputs, preds, result, pos, box_weights: Optional[Tensor]) -> Tensor:
        """Un-normalised per-positive box loss (P,)."""
        n_idx, r_idx = pos.nonzero(as_tuple=True)
        anchors = inputs.anchors_at(n_idx, r_idx)
        strides = inputs.anchor_strides[r_idx]
        reg = preds["reg"][n_idx, r_idx].float()
        gt = inputs.gt_boxes[n_idx, result.matched_gt[n_idx, r_idx]]
        if self.box_loss_type == "smooth_l1":
            target = self.box_coder.encode(anchors, gt, strides)
            loss = smooth_l1_loss(reg, target, self.smooth_l1_beta).sum(-1)
        else:
            decoded = self.box_coder.decode(anchors[None], reg[None], strides)[0]
            loss = iou_loss(decoded, gt, self.box_loss_type)
        return loss if box_weights is None else loss * box_weights

    def positive_centerness(
        self, inputs: AssignInputs, result: AssignResult, pos: Tensor
    ) -> Tensor:
        """(P,) FCOS centerness target of each positive anchor w.r.t. its GT."""
        n_idx, r_idx = pos.nonzero(as_tuple=True)
        gt = inputs.gt_boxes[n_idx, result.matched_gt[n_idx, r_idx]]
        return centerness_targets(inputs.anchors_at(n_idx, r_idx), gt)

    def box_loss(
        self, inputs: AssignInputs, preds: Dict[str, Tensor], result: AssignResult
    ) -> Dict[str, Tensor]:
        pos = result.positive_mask(self.num_classes)
        weights, normalizer = None, self.positives_normalizer(result, inputs=inputs)
        if self.box_loss_weighting == "centerness":
            weights = self.positive_centerness(inputs, result, pos)
        elif self.box_loss_weighting == "assigner" and result.weights is not None:
            weights = result.weights[pos]
        if weights is not None and self.box_loss_normalizer == "weights":
            name = _WEIGHT_NORMALIZER_NAMES[self.box_loss_weighting]
            normalizer = self.ema_normalizer(float(weights.sum()), name)
        box = self.box_losses(inputs, preds, result, pos, weights)
        return {f"loss_{self.loss_prefix}_box": self.box_loss_weight * box.sum() / normalizer}

    def auxiliary_losses(
        self, inputs: AssignInputs, preds: Dict[str, Tensor], result: AssignResult
    ) -> Dict[str, Tensor]:
        """Centerness BCE on positives when the head has a quality branch (ATSS/FCOS)."""
        if "quality" not in preds:
            return {}
        pos = result.positive_mask(self.num_classes)
        n_idx, r_idx = pos.nonzero(as_tuple=True)
        target = self.positive_centerness(inputs, result, pos)
        loss = F.binary_cross_entropy_with_logits(
            preds["quality"][n_idx, r_idx, 0].float(), target, reduction="sum"
        )
        return {
            f"loss_{self.loss_prefix}_ctr": self.quality_loss_weight
            * loss
            / self.positives_normalizer(result, inputs=inputs)
        }

    # ------------------------------------------------------------------ inference
    def forward_inference(self, images, features, predictions):
        anchors = self.anchor_generator(features)
        outputs = self.head_outputs
        per_level = {
            k: [permute_to_N_HWA_K(x, outputs[k].dim) for x in levels]
            for k, levels in predictions.items()
        }
        strides = [
            torch.full((len(a),), float(s), device=a.tensor.device)
            for a, s in zip(anchors, self.anchor_generator.strides)
        ]
        results = []
        for i, image_size in enumerate(images.image_sizes):
            preds_i = {k: [x[i] for x in v] for k, v in per_level.items()}
            results.append(self.inference_single_image(anchors, strides, preds_i, image_size))
        return results

    def level_candidates(self, preds_level: Dict[str, Tensor], num_cell_anchors: int):
        """The detections one level proposes: (n,) scores, anchor indices and class indices,
        at most ``test_topk_candidates``, from the level's predictions ((R_l, d) per anchor,
        (R_l / A_l, d) per location). Default: each anchor reads its location's per-location
        outputs; candidates gated by :meth:`level_scores`' gate, ranked by its final score."""
        outputs = self.head_outputs
        preds_level = {
            k: v.repeat_interleave(num_cell_anchors, dim=0) if outputs[k].per == "location" else v
            for k, v in preds_level.items()
        }
        gate, scores = self.level_scores(preds_level)
        keep = (gate > self.test_score_thresh) & torch.isfinite(scores)
        scores = scores[keep]
        idx = keep.nonzero()
        scores, order = scores.topk(min(idx.shape[0], self.test_topk_candidates))
        anchor_idx, class_idx = idx[order].unbind(1)
        return scores, anchor_idx, class_idx

    def level_scores(self, preds_level: Dict[str, Tensor]) -> Tuple[Tensor, Tensor]:
        """(R_l, K) scores used for the candidate threshold, and (R_l, K) final scores."""
        if self.classification_loss_type == "softmax_ce":
            cls_prob = torch.softmax(preds_level["cls"], dim=-1)[:, : self.num_classes]
        else:
            cls_prob = torch.sigmoid(preds_level["cls"])
        if self.score_mode == "cls":
            return cls_prob, cls_prob
        final = cls_prob * torch.sigmoid(preds_level["quality"])
        if self.score_mode == "sqrt_cls_quality":
            final = final.sqrt()
        return cls_prob, final

    def nms(self, boxes: Tensor, scores: Tensor, classes: Tensor) -> Tuple[Tensor, Tensor]:
        """Indices kept (best first) and the scores to report (soft-NMS may lower them)."""
        return batched_nms(boxes, scores, classes, self.test_nms_thresh), scores

    def inference_single_image(self, anchors, strides, preds: Dict[str, List[Tensor]], image_size):
        boxes_all, scores_all, classes_all = [], [], []
        cells = self.anchor_generator.num_cell_anchors
        for level in range(len(anchors)):
            level_preds = {k: v[level] for k, v in preds.items()}
            scores, anchor_idx, class_idx = self.level_candidates(level_preds, cells[level])
            reg = level_preds["reg"][anchor_idx].float()
            level_anchors = anchors[level].tensor[anchor_idx][None]
            boxes_all.append(
                self.box_coder.decode(level_anchors, reg[None], strides[level][anchor_idx])[0]
            )
            scores_all.append(scores)
            classes_all.append(class_idx)
        boxes, scores, classes = cat(boxes_all), cat(scores_all), cat(classes_all)
        finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        boxes_s = Boxes(boxes[finite])
        boxes_s.clip(image_size)
        keep, scores = self.nms(boxes_s.tensor, scores[finite], classes[finite])
        keep = keep[: self.max_detections_per_image]
        result = Instances(image_size)
        result.pred_boxes = boxes_s[keep]
        result.scores = scores[keep]
        result.pred_classes = classes[finite][keep]
        return result
