"""Semi-Anchored Detector (Chen, Qian, Li, arXiv 2009.04989): classify locations, regress and
classify anchors. The labels are :class:`SADAssigner`'s (three target sets); this file adds the
anchor-classification loss, the diagnostics and the inference of Sec. 3.3.

Losses (keys ``loss_sad_<term>``), L = cls + 2 box + 1 ac (Sec. 3.4):
    cls: sigmoid focal loss (alpha 0.25, gamma 1) over all locations, / EMA(positive locations)
        (the base's classification loss on the "locations" set, declared by the head);
    box: -ln(IoU) (UnitBox) of the regressed anchors (choice S4), / EMA(regressed anchors) (S5);
    ac: smoothed focal loss, Eq. 3 (alpha 0.25, beta 2), over the anchors of positive locations,
        / EMA(anchors with y_hat = 1) (S9). ``ac_loss="qfl"`` swaps in the QFL-style soft focal
        loss (ablation); sigma = 0 in the assigner gives binary targets (Table 5's "FL").
Inference: score = p(location class) * p(anchor); per location the top-1 anchor by p(anchor)
(``inference="top1"``), or the top ``inference_topk``, or every anchor with p(anchor) >
``inference_tau`` ("pos", Table 6); then the base's gate, top-k, decode and NMS.

Without the AC head (Table 2: "we randomly pick an anchor from each positive location and then
assign the probability of the corresponding location to the anchor ... repeat the experiments
for 10 times and report the best result") one random anchor per location carries the location
probability. The pick is drawn per image: draw ``noac_draw`` of an image is seeded by
(``noac_draw``, the image's ``image_id``, else its ``file_name``, else a digest of its pixels),
so an image gets the same anchors whatever the batch, the order or the process, and each draw
index is a different pick. Run draws 0..N-1 and report their mean and best
(``benchmarks/sad_noac_draws.py``).

Logged each step (``sad/*``): positives per GT and negatives per positive for anchors and
locations, mean mu_hat, and the mean IoU after regression (max over the image's GTs, on the
detached predictions) of the positive locations' anchors that are positive before regression
(``iou_after_reg_pos_anchors``) and of those that are not (``iou_after_reg_nonpos_anchors``):
under R1 only the former regress, under R2 all of them.
"""

import zlib
from typing import Dict, List

import torch
from torch import Tensor

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils.events import get_event_storage

from ..heads.sad_head import SADHead
from ..losses import focal_loss, smoothed_focal_loss
from .base import AssignmentDetector

__all__ = ["SemiAnchoredDetector", "noac_draw_seed"]


def noac_draw_seed(item: Dict, draw: int) -> int:
    """Seed of draw ``draw`` of the no-AC anchor pick for one input dict (module docstring)."""
    if item.get("image_id") is not None:
        key = f"id:{item['image_id']}"
    elif item.get("file_name"):
        key = f"file:{item['file_name']}"
    else:
        image = item["image"].detach().cpu().contiguous()
        key = f"pixels:{tuple(image.shape)}:{zlib.crc32(image.numpy().tobytes())}"
    return zlib.crc32(f"{int(draw)}/{key}".encode())


@META_ARCH_REGISTRY.register()
class SemiAnchoredDetector(AssignmentDetector):
    """:class:`AssignmentDetector` with a per-location classification head (:class:`SADHead`),
    the AC loss and SAD's inference. ``kwargs``: the base's arguments, with SAD's defaults."""

    loss_prefix = "sad"

    @configurable
    def __init__(
        self,
        *,
        ac_loss: str = "eq3",
        ac_loss_weight: float = 1.0,
        ac_alpha: float = 0.25,
        ac_beta: float = 2.0,
        inference: str = "top1",
        inference_topk: int = 2,
        inference_tau: float = 0.1,
        noac_draw: int = 0,
        focal_loss_gamma: float = 1.0,
        box_loss_type: str = "log_iou",
        box_loss_weight: float = 2.0,
        **kwargs,
    ):
        super().__init__(
            focal_loss_gamma=focal_loss_gamma,
            box_loss_type=box_loss_type,
            box_loss_weight=box_loss_weight,
            **kwargs,
        )
        if ac_loss not in ("eq3", "qfl"):
            raise ValueError(f"ac_loss must be 'eq3' or 'qfl', got {ac_loss!r}")
        if inference not in ("top1", "topk", "pos"):
            raise ValueError(f"inference must be 'top1', 'topk' or 'pos', got {inference!r}")
        if self.head_outputs["cls"].per != "location":
            raise ValueError("SAD classifies locations: the head's 'cls' must be per location")
        if len(set(self.anchor_generator.num_cell_anchors)) != 1:
            raise ValueError("SAD needs the same number of anchors per location on every level")
        self.ac_loss, self.ac_loss_weight = ac_loss, ac_loss_weight
        self.ac_alpha, self.ac_beta = ac_alpha, ac_beta
        self.inference, self.inference_topk, self.inference_tau = (
            inference,
            inference_topk,
            inference_tau,
        )
        self.noac_draw = int(noac_draw)
        self._noac_seeds: List[int] = []
        self._noac_generator = None

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        s = cfg.MODEL.SEMIANCHOR.SAD
        ret.update(ac_loss=s.AC_LOSS, ac_loss_weight=s.AC_LOSS_WEIGHT, ac_alpha=s.AC_ALPHA)
        ret.update(ac_beta=s.AC_BETA, inference=s.INFERENCE, inference_topk=s.INFERENCE_TOPK)
        ret.update(inference_tau=s.INFERENCE_TAU, noac_draw=s.NOAC_DRAW)
        return ret

    @classmethod
    def head_from_config(cls, cfg, feature_shapes):
        return SADHead(cfg, feature_shapes)

    def auxiliary_losses(self, inputs, preds, result) -> Dict[str, Tensor]:
        """Eq. 3 over the anchors of positive locations, / EMA(#y_hat = 1)."""
        if "ac" not in preds:
            return {}
        ac = result["anchor_cls"]
        valid, y_hat = ac.labels >= 0, ac.labels == 0
        logits, mu_hat = preds["ac"][..., 0][valid], ac.soft_targets[valid]
        if self.ac_loss == "eq3":
            loss = smoothed_focal_loss(logits, mu_hat, y_hat[valid], self.ac_alpha, self.ac_beta)
        else:
            loss = focal_loss(logits.float(), mu_hat, self.ac_alpha, self.ac_beta)
        normalizer = self.positives_normalizer(result, "anchor_cls")
        return {"loss_sad_ac": self.ac_loss_weight * loss.sum() / normalizer}

    def log_assignment(self, inputs, result) -> None:
        """Positives per GT and positive:negative ratios of anchors (static labels) and locations
        (the paper's 1:1400 -> 1:200), mean mu_hat of the positive AC targets, mean IoU after
        regression of the positive locations' anchors, positive or not before regression."""
        super().log_assignment(inputs, result)
        try:
            storage = get_event_storage()
        except AssertionError:
            return
        K, num_gt = self.num_classes, max(int(inputs.gt_counts.sum()), 1)
        anchor_labels, locs = result.extras["anchor_labels"], result["locations"].labels
        for name, labels in (("anchors", anchor_labels), ("locations", locs)):
            pos, neg = int(((labels >= 0) & (labels < K)).sum()), int((labels == K).sum())
            storage.put_scalar(f"sad/pos_per_gt_{name}", pos / num_gt)
            storage.put_scalar(f"sad/neg_per_pos_{name}", neg / max(pos, 1))
        ac = result["anchor_cls"]
        if int((ac.labels == 0).sum()):
            storage.put_scalar("sad/mean_mu_hat", float(ac.soft_targets[ac.labels == 0].mean()))
        for name, mask in self.positive_location_anchors(inputs, result).items():
            if int(mask.sum()):
                mu = result.extras["iou_after_regression"][mask]
                storage.put_scalar(f"sad/iou_after_reg_{name}", float(mu.mean()))

    def positive_location_anchors(self, inputs, result) -> Dict[str, Tensor]:
        """(N, R) masks of the anchors of positive locations: "pos_anchors" (positive before
        regression) and "nonpos_anchors" (background or ignored before regression)."""
        K = self.num_classes
        at_pos_loc = result["locations"].positive_mask(K)[:, inputs.location_index()]
        labels = result.extras["anchor_labels"]
        static_pos = (labels >= 0) & (labels < K)
        return {"pos_anchors": at_pos_loc & static_pos, "nonpos_anchors": at_pos_loc & ~static_pos}

    # ------------------------------------------------------------------ inference
    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """Detectron2's forward; without the AC head at inference, each image's draw seed is
        taken from its input dict first (module docstring)."""
        if self.training or "ac" in self.head_outputs:
            return super().forward(batched_inputs)
        self._noac_seeds = [noac_draw_seed(x, self.noac_draw) for x in batched_inputs]
        try:
            return super().forward(batched_inputs)
        finally:
            self._noac_seeds, self._noac_generator = [], None

    def inference_single_image(self, anchors, strides, preds, image_size):
        if "ac" not in preds:
            if not self._noac_seeds:
                raise RuntimeError(
                    "SAD without the AC head draws its anchors per image: run inference through "
                    "model(batched_inputs), whose dicts give the seed (image_id / file_name)"
                )
            seed = self._noac_seeds.pop(0)
            self._noac_generator = torch.Generator(device="cpu").manual_seed(seed)
        return super().inference_single_image(anchors, strides, preds, image_size)

    def level_candidates(self, preds_level: Dict[str, Tensor], num_cell_anchors: int):
        """Select anchors per location first (module doc), then gate and rank their scores."""
        A = num_cell_anchors
        loc_prob = torch.sigmoid(preds_level["cls"])  # (R_l / A, K)
        num_loc = loc_prob.shape[0]
        if "ac" in preds_level:
            ac_prob = torch.sigmoid(preds_level["ac"][:, 0]).view(num_loc, A)
        else:  # Table 2 without AC: a random anchor per location, the location probability
            if self._noac_generator is None:
                raise RuntimeError("the no-AC anchor pick needs the image's draw generator")
            pick = torch.randint(0, A, (num_loc,), generator=self._noac_generator)
            pick = pick.to(loc_prob.device)
            ac_prob = torch.nn.functional.one_hot(pick, A).to(loc_prob.dtype)
        if self.inference == "pos" and "ac" in preds_level:
            chosen = ac_prob > self.inference_tau
        else:
            k = (
                1
                if self.inference == "top1" or "ac" not in preds_level
                else min(self.inference_topk, A)
            )
            top = ac_prob.topk(k, dim=1).indices
            chosen = torch.zeros_like(ac_prob, dtype=torch.bool).scatter_(1, top, True)
        loc_idx, cell = chosen.nonzero(as_tuple=True)
        gate = loc_prob[loc_idx]  # (n, K)
        scores = gate * ac_prob[loc_idx, cell][:, None]
        keep = (gate > self.test_score_thresh) & torch.isfinite(scores)
        idx = keep.nonzero()
        scores, order = scores[keep].topk(min(idx.shape[0], self.test_topk_candidates))
        sel, class_idx = idx[order].unbind(1)
        return scores, loc_idx[sel] * A + cell[sel], class_idx
