"""DLA detector (Jiang, Xiao, Gu, ICSCA 2022): ATSS's detector with the prediction-aware
:class:`DLAAssigner`, the alpha schedule of Eq. 2 (held here: the assigner is given each step's
alpha), the metric head (Fig. 2) and Eq. 4-8.

L = cls + b * box + c * metric (b = 2, c = 1): cls is the base's focal loss / N_pos (Eq. 4); box
the base's GIoU weighted by w = m^gamma / sum(w) (``box_loss_weighting="assigner"``, Eq. 5-6);
metric a quality focal loss toward m (positives) and 0 (negatives), no alpha, / N_pos (Eq. 7).
N_pos and sum(w) are EMAs (momentum ``loss_normalizer_momentum``; 0: the batch's values).
Test time: gate by the class probability; rank (top-k, NMS) by ``score_mode``: "metric" (the
paper, Sec. 3.3, class-agnostic), "cls_metric", "sqrt_cls_metric" or "cls" (ablations).
"""

import logging
import math
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils.events import get_event_storage

from ..box_coder import LTRBBoxCoder
from ..heads.dla_head import DLAHead
from ..losses import pairwise_aligned_iou, quality_focal_loss
from .base import AssignmentDetector

__all__ = ["DLA", "dla_alpha", "iters_per_epoch_of"]

logger = logging.getLogger(__name__)

_SIDES = ("l", "t", "r", "b")


def dla_alpha(epoch: float, total_epochs: float, alpha0: float = 0.9) -> float:
    """DLA Eq. 2: ``(1 - alpha0) * exp(-t / sqrt(T)) + alpha0``: 1 at t = 0, decays toward
    ``alpha0`` (reached only as t / sqrt(T) -> inf; at t = T it is alpha0 + (1-alpha0) e^-sqrt(T)).

    Args:
        epoch: t, the current (fractional) epoch, >= 0.
        total_epochs: T > 0.
        alpha0: the asymptote (paper: 0.9).
    """
    if total_epochs <= 0:
        raise ValueError(f"total_epochs must be > 0, got {total_epochs}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return (1.0 - alpha0) * math.exp(-epoch / math.sqrt(total_epochs)) + alpha0


def iters_per_epoch_of(datasets: dict) -> float:
    """Training images / total batch size of Detectron2 datasets ``{"names", "filter_empty",
    "total_batch_size"}`` (the yacs path's source of Eq. 2's epochs)."""
    from detectron2.data import get_detection_dataset_dicts

    num = len(get_detection_dataset_dicts(datasets["names"], filter_empty=datasets["filter_empty"]))
    ipe = num / datasets["total_batch_size"]
    logger.info(
        f"DLA alpha schedule: {num} training images / batch {datasets['total_batch_size']} = "
        f"{ipe:.2f} iterations per epoch"
    )
    return ipe


@META_ARCH_REGISTRY.register()
class DLA(AssignmentDetector):
    """:class:`AssignmentDetector` with the current alpha in the assigner's inputs, a metric
    head and DLA's metric loss and test-time score.

    Eq. 2 needs the training length in epochs (t = iter / iters_per_epoch, T = max_iter /
    iters_per_epoch, fractional, the iteration from Detectron2's event storage): ``fixed_alpha``
    (Table 2's "fix"), or ``iters_per_epoch`` + ``max_iter`` (arguments, or
    :meth:`set_training_schedule`, which ``tools/lazyconfig_train_net.py`` calls), or, on the
    yacs path, ``schedule_from_datasets`` (``iters_per_epoch_of``'s dict plus "max_iter").
    alpha0: Eq. 2's asymptote (0.9); metric_loss_weight: c; metric_loss_beta: Eq. 7's exponent.
    """

    loss_prefix = "dla"
    score_modes = ("metric", "cls_metric", "sqrt_cls_metric", "cls")

    @configurable
    def __init__(
        self,
        *,
        alpha0: float = 0.9,
        fixed_alpha: Optional[float] = None,
        iters_per_epoch: Optional[float] = None,
        max_iter: Optional[int] = None,
        metric_loss_weight: float = 1.0,
        metric_loss_beta: float = 2.0,
        score_mode: str = "metric",
        box_loss_weighting: str = "assigner",
        schedule_from_datasets: Optional[dict] = None,
        **kwargs,
    ):
        if box_loss_weighting not in ("assigner", "none"):
            raise ValueError(
                f"DLA box_loss_weighting must be 'assigner' or 'none', got {box_loss_weighting!r}"
            )
        super().__init__(box_loss_weighting=box_loss_weighting, score_mode=score_mode, **kwargs)
        if "metric" not in self.head_outputs:
            raise ValueError("DLA needs a head with a 'metric' output (DLAHead)")
        for name, value in (("alpha0", alpha0), ("fixed_alpha", fixed_alpha)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if (iters_per_epoch is None) != (max_iter is None):
            raise ValueError("give both iters_per_epoch and max_iter, or neither")
        self.alpha0 = float(alpha0)
        self.fixed_alpha = None if fixed_alpha is None else float(fixed_alpha)
        self.schedule_from_datasets = schedule_from_datasets
        self.iters_per_epoch, self.max_iter = None, None
        if iters_per_epoch is not None:
            self.set_training_schedule(iters_per_epoch=iters_per_epoch, max_iter=max_iter)
        self.metric_loss_weight = metric_loss_weight
        self.metric_loss_beta = metric_loss_beta

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        d = cfg.MODEL.SEMIANCHOR.DLA
        max_iter = d.MAX_ITER or cfg.SOLVER.MAX_ITER
        # Eq. 2's epochs from the training data, counted on the first training step (a build for
        # DefaultPredictor must not need the training set); ITERS_PER_EPOCH or FIXED_ALPHA skip it
        datasets = dict(
            names=list(cfg.DATASETS.TRAIN),
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            max_iter=max_iter,
        )
        ret.update(
            alpha0=d.ALPHA0,
            fixed_alpha=d.FIXED_ALPHA if d.FIXED_ALPHA >= 0 else None,
            iters_per_epoch=d.ITERS_PER_EPOCH or None,
            max_iter=max_iter if d.ITERS_PER_EPOCH else None,
            metric_loss_weight=d.METRIC_LOSS_WEIGHT,
            metric_loss_beta=d.METRIC_LOSS_BETA,
            score_mode=d.SCORE_MODE,
            schedule_from_datasets=datasets,
        )
        return ret

    @classmethod
    def head_from_config(cls, cfg, feature_shapes):
        return DLAHead(cfg, feature_shapes)

    # ------------------------------------------------------------------ alpha (Eq. 2)
    def set_training_schedule(self, *, iters_per_epoch: float, max_iter: int) -> None:
        """The training length: ``iters_per_epoch`` = training images / total batch size."""
        if not (iters_per_epoch > 0 and math.isfinite(iters_per_epoch)):
            raise ValueError(f"iters_per_epoch must be a finite number > 0, got {iters_per_epoch}")
        if not max_iter > 0:
            raise ValueError(f"max_iter must be > 0, got {max_iter}")
        self.iters_per_epoch, self.max_iter = float(iters_per_epoch), int(max_iter)

    def alpha_at(self, iteration: int) -> float:
        """alpha at a training iteration (Eq. 2, or ``fixed_alpha``)."""
        if self.fixed_alpha is not None:
            return self.fixed_alpha
        if self.iters_per_epoch is None and self.schedule_from_datasets:
            src = self.schedule_from_datasets
            self.set_training_schedule(
                iters_per_epoch=iters_per_epoch_of(src), max_iter=src["max_iter"]
            )
        if self.iters_per_epoch is None:
            raise RuntimeError(
                "DLA's alpha schedule (Eq. 2) needs the training length: call "
                "model.set_training_schedule(iters_per_epoch=len(train dataset) / total batch "
                "size, "
                "max_iter=...) before training (tools/lazyconfig_train_net.py does), set "
                "model.iters_per_epoch and model.max_iter in the config, or set fixed_alpha"
            )
        return dla_alpha(
            iteration / self.iters_per_epoch, self.max_iter / self.iters_per_epoch, self.alpha0
        )

    def assign_inputs_extras(self, preds: Dict[str, Tensor]) -> Dict[str, object]:
        """The current alpha (at the event storage's iteration), logged as ``dla_alpha``."""
        try:
            storage = get_event_storage()
        except AssertionError:
            storage = None
        if storage is None and self.fixed_alpha is None:
            raise RuntimeError(
                "DLA reads the training iteration from Detectron2's EventStorage: train inside one"
            )
        alpha = self.alpha_at(storage.iter if storage is not None else 0)
        if storage is not None:
            storage.put_scalar("dla_alpha", alpha, smoothing_hint=False)  # exact, not a median
        return {"alpha": alpha}

    # ------------------------------------------------------------------ diagnostics
    def log_assignment(self, inputs, result) -> None:
        """The base's positive counts, plus what the assignment and the box loss see,
        logged every step under ``dla/`` (cheap: positives only, plus one comparison over the
        regression outputs):

        * ``dla/pos_metric_mean``, ``dla/pos_weight_sum`` (sum of w = m^gamma over the batch, the
          box loss's normaliser before the EMA), ``dla/pos_score_mean`` (s), ``dla/pos_iou_prior``;
        * ``dla/pos_iou_pred``: mean IoU of the positives' decoded (detached) predictions with their
          GT; ``dla/pos_degenerate``: share of positives whose predicted box has zero area;
        * ltrb coders only: ``dla/pos_ltrb_zero`` (share of the positives' 4 distances at 0 after
          the ReLU: no gradient under a plain ReLU), ``dla/pos_ltrb_all_zero`` (share of positives
          with all 4 at 0: a point box), ``dla/ltrb_zero`` (over every location) and per side
          ``dla/ltrb_<side>_zero`` / ``dla/pos_ltrb_<side>_zero`` (side l, t, r, b): a side at 1.0
          over every location for good is a dead channel (``regression_activation``,
          projects/DLA/DESIGN.md);
        * ``dla/pos_level_<l>``: share of the positives on pyramid level l (0 = P3).
        """
        super().log_assignment(inputs, result)
        try:
            storage = get_event_storage()
        except AssertionError:
            return
        pos = result.positive_mask(self.num_classes)
        n_idx, r_idx = pos.nonzero(as_tuple=True)
        num_pos = int(n_idx.numel())
        ltrb = isinstance(self.box_coder, LTRBBoxCoder)
        if inputs.pred_regression is not None and ltrb:
            zero = (inputs.pred_regression <= 0).float().flatten(0, -2).mean(0)  # (4,)
            storage.put_scalar("dla/ltrb_zero", float(zero.mean()))
            for side, share in zip(_SIDES, zero.tolist()):
                storage.put_scalar(f"dla/ltrb_{side}_zero", share)
        level_of = torch.repeat_interleave(
            torch.arange(len(inputs.num_anchors_per_level), device=r_idx.device),
            torch.as_tensor(inputs.num_anchors_per_level, device=r_idx.device),
        )
        counts = torch.bincount(level_of[r_idx], minlength=len(inputs.num_anchors_per_level))
        for level, c in enumerate(counts.tolist()):
            storage.put_scalar(f"dla/pos_level_{level}", c / max(num_pos, 1))
        if num_pos == 0:
            return
        m = result.extras["metric"][n_idx, r_idx].float()
        storage.put_scalar("dla/pos_metric_mean", float(m.mean()))
        storage.put_scalar("dla/pos_weight_sum", float(result.weights[n_idx, r_idx].sum()))
        gt_idx = result.matched_gt[n_idx, r_idx]
        gt = inputs.gt_boxes[n_idx, gt_idx].float()
        anchors = inputs.anchors_at(n_idx, r_idx).float()
        prior_iou, _ = pairwise_aligned_iou(anchors, gt)
        storage.put_scalar("dla/pos_iou_prior", float(prior_iou.mean()))
        if inputs.pred_scores is not None:
            s = inputs.pred_scores[n_idx, r_idx, inputs.gt_classes[n_idx, gt_idx]]
            storage.put_scalar("dla/pos_score_mean", float(s.float().mean()))
        if inputs.pred_regression is None:
            return
        reg = inputs.pred_regression[n_idx, r_idx].float()
        boxes = self.box_coder.decode(anchors[None], reg[None], inputs.anchor_strides[r_idx])[0]
        iou, _ = pairwise_aligned_iou(boxes, gt)
        area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
        storage.put_scalar("dla/pos_iou_pred", float(torch.nan_to_num(iou).mean()))
        storage.put_scalar("dla/pos_degenerate", float((area <= 0).float().mean()))
        if ltrb:
            dead = reg <= 0
            storage.put_scalar("dla/pos_ltrb_zero", float(dead.float().mean()))
            storage.put_scalar("dla/pos_ltrb_all_zero", float(dead.all(dim=1).float().mean()))
            for side, share in zip(_SIDES, dead.float().mean(0).tolist()):
                storage.put_scalar(f"dla/pos_ltrb_{side}_zero", share)

    # ------------------------------------------------------------------ losses and scores
    def auxiliary_losses(self, inputs, preds, result) -> Dict[str, Tensor]:
        """Eq. 7: quality focal loss toward m (positives) and 0 (negatives), no alpha, / N_pos."""
        if "metric" not in result.extras or result.weights is None:
            raise ValueError(
                "DLA's losses need the metric m and the weights m^gamma of a DLAAssigner; "
                f"{type(self.assigner).__name__} gives neither"
            )
        valid = result.labels >= 0
        target = result.extras["metric"].to(torch.float32)[valid]
        loss = quality_focal_loss(
            preds["metric"][..., 0][valid].float(), target, self.metric_loss_beta
        )
        return {
            f"loss_{self.loss_prefix}_metric": self.metric_loss_weight
            * loss.sum()
            / self.positives_normalizer(result)
        }

    def level_scores(self, preds_level: Dict[str, Tensor]) -> Tuple[Tensor, Tensor]:
        """(R_l, K) gate (class probability) and (R_l, K) final score (see ``score_mode``)."""
        cls_prob = torch.sigmoid(preds_level["cls"])
        if self.score_mode == "cls":
            return cls_prob, cls_prob
        metric = torch.sigmoid(preds_level["metric"])  # (R_l, 1), broadcast over classes
        if self.score_mode == "metric":
            return cls_prob, metric.expand_as(cls_prob)
        final = cls_prob * metric
        return cls_prob, final if self.score_mode == "cls_metric" else final.sqrt()
