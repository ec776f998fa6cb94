"""PADet (Tang et al., "PosNeg-Balanced Anchors with Aligned Features for Single-Shot Object
Detection", 2019): anchor promotion (APM) + feature alignment (FAM) on an encoder-decoder.

Training: two matchings per step (a :class:`StagedAssigner`: "initial" on the SSD anchors for the
APM, "promoted" on the APM-refined anchors for the detection module with the theta rule), then
Sec. 3.3's L = (BCE_apm + smooth-L1_apm) / N_apm + (CE_det + smooth-L1_det) / N_det:
    loss_padet_apm_cls: sigmoid BCE of the APM positive logit, positives + negatives;
    loss_padet_apm_box: smooth-L1 (beta 1) of the APM deltas toward the initial positives' GTs;
    loss_padet_cls: softmax (K + 1) cross-entropy, positives + negatives of the promoted anchors
        that the theta rule leaves (the base's ``classification_loss="softmax_ce"``);
    loss_padet_box: smooth-L1 of the detection deltas w.r.t. the promoted anchors (the base's).
Which negatives train and what N_apm / N_det are is ``loss_mode``:
    "ohem" (default): per image the ``neg_pos_ratio`` (detection) / ``apm_neg_pos_ratio`` (APM)
        x P negatives of highest loss (3, the DSSD/RefineDet default; after the theta rule);
        N_apm / N_det are EMAs of the positive counts (momentum ``loss_normalizer_momentum``).
        The paper names no mining: this is our choice (P6, projects/PADet/DESIGN.md), kept as
        the default because the paper's loss trains worse on BCCD (projects/PADet/README.md).
    "paper": Sec. 3.1 / 3.3 literally: "we keep the positives and the remaining hard negatives
        to train the detection module": every positive and every negative that survives the IoU
        band and theta trains the detection module, every positive and negative of the initial
        matching trains the APM; N_apm / N_det are this step's positive counts of the initial /
        promoted matching (at least 1; no EMA). The ratios must be 0 in this mode.
Logged each step (``padet/*``): positives before/after promotion, negatives per positive of the
candidate pool, the negatives theta ignores (per image and as a share of the promoted matching's
negatives), and what actually enters each module's classification loss (``trained_neg_per_pos``).
Inference: promoted anchors; an anchor whose APM score is below theta is discarded; score =
detection softmax probability gated at ``test_score_thresh`` (0.01); per-class soft-NMS
(linear, N_t 0.3; the ``soft_nms`` op); ``max_detections_per_image`` (300). SSD's priors are laid
out for one square input: with ``test_input_size`` an image of another size is warped to it
before the backbone (what the LazyConfigs' test mapper does), so Detectron2's ``DefaultPredictor``
(whose ResizeShortestEdge keeps the aspect ratio) gives the detections evaluation gives.

Table 2's components: APM_C (the anchor scoring branch: its BCE loss, the theta rule, the test
gate) is on iff ``theta`` is not None; APM_R (the anchor adjustment branch: its smooth-L1 loss,
matching and decoding on the promoted anchors) iff ``promote``; ``use_apm=False`` turns both off
(the baseline). The head must build exactly the branches in use (``PADetHead(apm_scoring=...,
apm_adjustment=...)``) and the assigner's ``PromotedAnchorAssigner`` stages must agree (same
``promote``, theta on/off): a mismatch is a ValueError at construction, not a silent ablation.
"""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes
from detectron2.utils.events import get_event_storage

from ..losses import hard_negative_mask, smooth_l1_loss
from .base import AssignmentDetector

__all__ = ["PADet", "LOSS_MODES"]

LOSS_MODES = ("ohem", "paper")


@META_ARCH_REGISTRY.register()
class PADet(AssignmentDetector):
    """:class:`AssignmentDetector` with the APM losses, hard-negative mining, promoted anchors at
    test time and soft-NMS. With an APM branch the assigner must be a ``StagedAssigner`` with a
    stage named "initial" (without APM, any assigner). ``kwargs``: the base's arguments.

    Args:
        use_apm: False: no APM at all (Table 2's baseline); the same as promote=False and
            theta=None.
        promote: APM_R: train the anchor adjustment branch, match the detection module on and
            decode detections from the promoted anchors (False: the initial anchors).
        theta: APM_C: train the anchor scoring branch; negatives it scores below theta are
            ignored in training (the assigner's rule) and anchors below it dropped at test time.
            None: APM_C off.
        loss_mode: "ohem" (hard-negative mining, EMA normalisers) or "paper" (every negative
            theta leaves, normalised by this step's positive counts); module docstring.
        neg_pos_ratio / apm_neg_pos_ratio: hard-negative mining of the detection / APM losses
            ("ohem"; 0 keeps every negative); must be 0 with ``loss_mode="paper"``.
        soft_nms: dict of ``soft_nms`` arguments (method, iou_threshold, sigma, min_score).
        test_input_size: (H, W) the priors are laid out for; at inference an input image of
            another size is warped to it (bilinear, antialiased), detections are returned in the
            frame of the input's "height" / "width" (default: the input image's size). None: the
            image is used as given (the test mapper must produce the training size).
    """

    loss_prefix = "padet"
    score_modes = ("cls",)  # the detection softmax probability, gated by the APM (level_scores)

    @configurable
    def __init__(
        self,
        *,
        use_apm: bool = True,
        promote: bool = True,
        theta: Optional[float] = 0.01,
        loss_mode: str = "ohem",
        neg_pos_ratio: float = 3.0,
        apm_neg_pos_ratio: float = 3.0,
        apm_loss_weight: float = 1.0,
        soft_nms: Dict = None,
        classification_loss: str = "softmax_ce",
        box_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 1.0,
        test_score_thresh: float = 0.01,
        max_detections_per_image: int = 300,
        test_input_size: Optional[Tuple[int, int]] = None,
        **kwargs,
    ):
        if loss_mode not in LOSS_MODES:
            raise ValueError(f"loss_mode must be one of {LOSS_MODES}, got {loss_mode!r}")
        if loss_mode == "paper":
            if neg_pos_ratio != 0 or apm_neg_pos_ratio != 0:
                raise ValueError(
                    "loss_mode='paper' trains on every negative theta leaves (no mining): set "
                    f"neg_pos_ratio=0 and apm_neg_pos_ratio=0 (got {neg_pos_ratio}, "
                    f"{apm_neg_pos_ratio})"
                )
            momentum = kwargs.setdefault("loss_normalizer_momentum", 0.0)
            if momentum != 0.0:
                raise ValueError(
                    "loss_mode='paper' divides by this step's positive counts (N_apm, N_det): "
                    f"loss_normalizer_momentum must be 0, got {momentum}"
                )
        super().__init__(
            classification_loss=classification_loss,
            box_loss_type=box_loss_type,
            smooth_l1_beta=smooth_l1_beta,
            test_score_thresh=test_score_thresh,
            max_detections_per_image=max_detections_per_image,
            **kwargs,
        )
        if not use_apm:
            promote, theta = False, None
        self.promote, self.theta = bool(promote), theta
        self._check_apm_components()
        self.loss_mode = loss_mode
        self.neg_pos_ratio, self.apm_neg_pos_ratio = neg_pos_ratio, apm_neg_pos_ratio
        self.apm_loss_weight = apm_loss_weight
        self.soft_nms = dict(method="linear", iou_threshold=0.3, sigma=0.5, min_score=0.001)
        self.soft_nms.update(soft_nms or {})
        if test_input_size is not None:
            test_input_size = tuple(int(v) for v in test_input_size)
            if len(test_input_size) != 2 or min(test_input_size) <= 0:
                raise ValueError(f"test_input_size must be (H, W) > 0, got {test_input_size}")
        self.test_input_size = test_input_size

    @property
    def use_apm(self) -> bool:
        """Whether any APM branch is used (False: Table 2's baseline)."""
        return self.promote or self.theta is not None

    def _check_apm_components(self) -> None:
        """The head builds exactly the APM branches in use, and the assigner agrees (class doc)."""
        from ..assigners import StagedAssigner
        from ..assigners.padet import PromotedAnchorAssigner

        outputs = self.head_outputs
        for name, output, used, switch in (
            ("anchor scoring (APM_C)", "apm_cls", self.theta is not None, "theta"),
            ("anchor adjustment (APM_R)", "apm_reg", self.promote, "promote"),
        ):
            if used and output not in outputs:
                raise ValueError(
                    f"{switch}={getattr(self, switch)} needs the APM {name} branch: the head has "
                    f"no {output!r} output (PADetHead(apm_scoring=..., apm_adjustment=...))"
                )
            if not used and output in outputs:
                raise ValueError(
                    f"{switch}={getattr(self, switch)} leaves the head's APM {name} branch "
                    f"({output!r}) untrained: build the head without it"
                )
        stages = self.assigner.stages if isinstance(self.assigner, StagedAssigner) else []
        if self.use_apm and "initial" not in dict(stages):
            raise ValueError("PADet's APM losses need a StagedAssigner with an 'initial' stage")
        for name, stage in stages:
            if not isinstance(stage, PromotedAnchorAssigner):
                continue
            if stage.promote != self.promote or (stage.theta is None) != (self.theta is None):
                raise ValueError(
                    f"assigner stage {name!r} (promote={stage.promote}, theta={stage.theta}) "
                    f"disagrees with the model (promote={self.promote}, theta={self.theta}): "
                    "training and test would use different APM components"
                )

    @classmethod
    def from_config(cls, cfg):
        from ..anchors import SSDAnchorGenerator, ssd_sizes
        from ..assigners.build import build_assigner

        p = cfg.MODEL.SEMIANCHOR.PADET
        theta = p.THETA if p.THETA >= 0 and p.USE_APM else None
        promote = p.PROMOTE and p.USE_APM
        ret = super().from_config(cfg)
        mins, maxs = ssd_sizes(p.INPUT_SIZE, p.SIZE_FRACTIONS)
        ret["anchor_generator"] = SSDAnchorGenerator(
            min_sizes=mins, max_sizes=maxs, aspect_ratios=p.ASPECT_RATIOS, strides=p.STRIDES
        )
        ret["assigner"] = build_assigner(cfg, "PADet")  # whatever ASSIGNER.NAME says
        ret.update(use_apm=p.USE_APM, promote=promote, theta=theta, neg_pos_ratio=p.NEG_POS_RATIO)
        ret.update(apm_neg_pos_ratio=p.APM_NEG_POS_RATIO, loss_mode=p.LOSS_MODE)
        if p.LOSS_MODE == "paper":
            ret["loss_normalizer_momentum"] = 0.0
        ret["test_input_size"] = (p.INPUT_SIZE, p.INPUT_SIZE) if p.TEST_WARP else None
        ret["soft_nms"] = dict(
            method=p.SOFT_NMS_METHOD,
            iou_threshold=p.SOFT_NMS_IOU,
            sigma=p.SOFT_NMS_SIGMA,
            min_score=p.SOFT_NMS_MIN_SCORE,
        )
        return ret

    @classmethod
    def head_from_config(cls, cfg, feature_shapes):
        from ..heads.padet_head import PADetHead

        p = cfg.MODEL.SEMIANCHOR.PADET
        return PADetHead(
            input_shape=feature_shapes,
            num_classes=cfg.MODEL.SEMIANCHOR.NUM_CLASSES,
            num_anchors=[len(r) + 1 for r in p.ASPECT_RATIOS],  # + SSD's extra square
            fam_mode=p.FAM_MODE,
            fam_levels=p.FAM_LEVELS,
            fam_grad_mul=p.FAM_GRAD_MUL,
            fam_impl=p.FAM_IMPL,
            fam_offset_grad_mul=p.FAM_OFFSET_GRAD_MUL,
            prior_prob=cfg.MODEL.SEMIANCHOR.HEAD.PRIOR_PROB,
            apm_scoring=p.USE_APM and p.THETA >= 0,
            apm_adjustment=p.USE_APM and p.PROMOTE,
        )

    # ------------------------------------------------------------------ assignment
    def assign_inputs_extras(self, preds: Dict[str, Tensor]) -> Dict[str, object]:
        extras = {}
        if "apm_reg" in preds:
            extras["apm_regression"] = preds["apm_reg"].detach().float()
        if "apm_cls" in preds:
            extras["apm_scores"] = torch.sigmoid(preds["apm_cls"][..., 0].detach().float())
        return extras

    def log_assignment(self, inputs, result) -> None:
        """Positives before/after promotion, pos:neg of the candidate pools before/after the
        theta rule (Figs. 1-2), the negatives theta ignores (per image and share)."""
        super().log_assignment(inputs, result)
        try:
            storage = get_event_storage()
        except AssertionError:
            return
        K = self.num_classes
        for name, res in (("initial", result.stages.get("initial")), ("promoted", result)):
            if res is None:
                continue
            pos, neg = int(res.positive_mask(K).sum()), int((res.labels == K).sum())
            storage.put_scalar(f"padet/num_pos_{name}", pos / inputs.num_images)
            storage.put_scalar(f"padet/neg_per_pos_{name}", neg / max(pos, 1))
        if "theta_ignored" in result.extras:
            ignored = int(result.extras["theta_ignored"].sum())
            remaining = int((result.labels == K).sum())
            storage.put_scalar("padet/theta_ignored", ignored / inputs.num_images)
            storage.put_scalar("padet/theta_ignored_share", ignored / max(ignored + remaining, 1))

    def negatives_used(self, loss: Tensor, pos: Tensor, neg: Tensor, ratio: float, module: str):
        """(N, R) mask of the elements a module's classification loss sums over: positives and
        the negatives ``loss_mode`` keeps; logs ``padet/trained_neg_per_pos_<module>`` (what
        actually trains, after mining) and ``padet/trained_pos_<module>`` (per image)."""
        used = hard_negative_mask(loss, pos, neg, ratio if self.loss_mode == "ohem" else 0.0)
        try:
            storage = get_event_storage()
        except AssertionError:
            return used
        num_pos = int(pos.sum())
        storage.put_scalar(f"padet/trained_pos_{module}", num_pos / max(pos.shape[0], 1))
        storage.put_scalar(
            f"padet/trained_neg_per_pos_{module}", int((used & neg).sum()) / max(num_pos, 1)
        )
        return used

    # ------------------------------------------------------------------ losses
    def classification_loss(self, inputs, preds, result) -> Dict[str, Tensor]:
        """Softmax CE over positives + the negatives ``loss_mode`` keeps of the promoted
        anchors, / N_det."""
        K = self.num_classes
        valid = result.labels >= 0
        ce = F.cross_entropy(
            preds["cls"].float().flatten(0, 1),
            result.labels.clamp(min=0).flatten(),
            reduction="none",
        ).view_as(result.labels)
        pos, neg = result.positive_mask(K), valid & (result.labels == K)
        used = self.negatives_used(ce, pos, neg, self.neg_pos_ratio, "det")
        return {"loss_padet_cls": ce[used].sum() / self.positives_normalizer(result)}

    def auxiliary_losses(self, inputs, preds, result) -> Dict[str, Tensor]:
        """APM: BCE (positives + the negatives ``loss_mode`` keeps; APM_C) and smooth-L1 (APM_R)
        on the initial anchors, / N_apm; only the branches in use."""
        if not self.use_apm:
            return {}
        first = result.stages.get("initial")
        if first is None:
            raise ValueError("PADet's APM losses need a StagedAssigner with an 'initial' stage")
        first_inputs = first.inputs if first.inputs is not None else inputs
        K = self.num_classes
        pos, neg = first.positive_mask(K), first.labels == K
        normalizer = self.positives_normalizer(first, name="loss_normalizer_apm")
        w, losses = self.apm_loss_weight, {}
        if "apm_cls" in preds:
            logits = preds["apm_cls"][..., 0].float()
            bce = F.binary_cross_entropy_with_logits(logits, pos.float(), reduction="none")
            used = self.negatives_used(bce, pos, neg, self.apm_neg_pos_ratio, "apm")
            losses["loss_padet_apm_cls"] = w * bce[used].sum() / normalizer
        if "apm_reg" in preds:
            n_idx, r_idx = pos.nonzero(as_tuple=True)
            anchors = first_inputs.anchors_at(n_idx, r_idx)
            gt = first_inputs.gt_boxes[n_idx, first.matched_gt[n_idx, r_idx]]
            target = self.box_coder.encode(anchors, gt, first_inputs.anchor_strides[r_idx])
            deltas = preds["apm_reg"][n_idx, r_idx].float()
            box = smooth_l1_loss(deltas, target, self.smooth_l1_beta)
            losses["loss_padet_apm_box"] = w * box.sum() / normalizer
        return losses

    # ------------------------------------------------------------------ inference
    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        if not self.training and self.test_input_size is not None:
            batched_inputs = [self._warp_to_test_input_size(x) for x in batched_inputs]
        return super().forward(batched_inputs)

    def _warp_to_test_input_size(self, item: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """``item`` with its image warped to ``test_input_size`` (a new dict; the output frame,
        "height" / "width", stays the given one or the image's own size)."""
        image = item["image"]
        height, width = image.shape[-2:]
        if (height, width) == self.test_input_size:
            return item
        warped = F.interpolate(
            image[None].float(),
            size=self.test_input_size,
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0]
        return {
            **item,
            "image": warped,
            "height": item.get("height", height),
            "width": item.get("width", width),
        }

    def inference_single_image(self, anchors, strides, preds, image_size):
        if self.promote:  # detections are decoded from the promoted anchors
            promoted = []
            for level, a in enumerate(anchors):
                boxes = self.box_coder.decode(
                    a.tensor[None], preds["apm_reg"][level][None].float(), strides[level]
                )[0]
                ok = torch.isfinite(boxes).all(dim=1, keepdim=True)
                promoted.append(Boxes(torch.where(ok, boxes, a.tensor)))
            anchors = promoted
        return super().inference_single_image(anchors, strides, preds, image_size)

    def level_scores(self, preds_level: Dict[str, Tensor]) -> Tuple[Tensor, Tensor]:
        """Detection softmax probabilities; anchors the APM scores below theta are dropped."""
        prob = torch.softmax(preds_level["cls"].float(), dim=-1)[:, : self.num_classes]
        if self.theta is not None:
            keep = torch.sigmoid(preds_level["apm_cls"].float()) >= self.theta  # (R_l, 1)
            prob = prob * keep
        return prob, prob

    def nms(self, boxes: Tensor, scores: Tensor, classes: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-class soft-NMS (linear, N_t 0.3 by default); returns the kept indices and scores."""
        from ...layers import soft_nms

        keep, kept_scores = soft_nms(boxes, scores, classes, **self.soft_nms)
        updated = scores.clone()
        updated[keep] = kept_scores.to(updated.dtype)
        return keep, updated
