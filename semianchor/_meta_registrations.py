"""Python-side registrations of the ``torch.ops.semianchor`` operators: fake (meta) kernels, so the
ops trace under FakeTensor / torch.compile / ``torch.library.opcheck``, and autocast rules (fp16 and
bf16 inputs are computed in fp32). :func:`semianchor.extension.load_ops` calls
:func:`register_python_kernels` once ``_C`` is loaded, because the schemas must exist first. This
module depends on torch only, so the extension loader needs nothing from :mod:`semianchor.layers`.
A fake kernel names the arguments its output shapes depend on and takes the rest as ``*_`` (the
schemas in ``layers/csrc/ops.cpp`` list them all).
"""

import torch

_done = []


def register_python_kernels() -> None:
    if _done:
        return
    _done.append(True)

    @torch.library.register_fake("semianchor::iou_after_regression")
    def _iou_after_regression_fake(anchors, regression, *_):
        torch._check(regression.dim() == 3, lambda: "regression must have shape (N, R, 4)")
        torch._check(regression.dtype == torch.float32, lambda: "regression must be float32")
        N, R = regression.shape[:2]
        return (
            regression.new_empty((N, R, 4)),
            regression.new_empty((N, R)),
            regression.new_empty((N, R)),
            regression.new_empty((N, R), dtype=torch.int64),
        )

    @torch.library.register_fake("semianchor::atss_candidates")
    def _atss_candidates_fake(
        anchors, gt_boxes, gt_counts, num_anchors_per_level, k_per_level, anchors_per_location, grid
    ):
        torch._check(gt_boxes.dim() == 3, lambda: "gt_boxes must have shape (N, M, 4)")
        N, M = gt_boxes.shape[:2]
        C = sum(min(n, k_per_level) for n in num_anchors_per_level)
        return (
            gt_boxes.new_empty((N, M, C), dtype=torch.int64),
            gt_boxes.new_empty((N, M, C), dtype=torch.float32),
        )

    @torch.library.register_fake("semianchor::atss_assign")
    def _atss_assign_fake(cand_idx, cand_scores, anchors, gt_boxes, gt_counts, center_eps):
        torch._check(cand_idx.dim() == 3, lambda: "cand_idx must have shape (N, M, C)")
        N, M = cand_idx.shape[:2]
        R = anchors.shape[0]
        return (
            cand_idx.new_empty((N, R)),
            cand_scores.new_empty((N, R)),
            cand_scores.new_empty((N, M)),
        )

    def _per_anchor_outputs(anchors, gt_boxes, dtypes):
        """One (N, R) tensor per dtype: N images of ``gt_boxes``, R anchors."""
        torch._check(gt_boxes.dim() == 3, lambda: "gt_boxes must have shape (N, M, 4)")
        torch._check(anchors.dim() in (2, 3), lambda: "anchors must have shape (R, 4) or (N, R, 4)")
        shape = (gt_boxes.shape[0], anchors.shape[-2])
        return tuple(gt_boxes.new_empty(shape, dtype=dtype) for dtype in dtypes)

    @torch.library.register_fake("semianchor::max_iou_match")
    def _max_iou_match_fake(anchors, gt_boxes, *_):  # matched_gt, labels, max_iou
        return _per_anchor_outputs(anchors, gt_boxes, (torch.int64, torch.int8, torch.float32))

    @torch.library.register_fake("semianchor::topn_iou_match")
    def _topn_iou_match_fake(anchors, gt_boxes, *_):  # matched_gt, max_iou
        return _per_anchor_outputs(anchors, gt_boxes, (torch.int64, torch.float32))

    for name in (
        "iou_after_regression",
        "atss_candidates",
        "atss_assign",
        "max_iou_match",
        "topn_iou_match",
    ):
        for device_type in ("cpu", "cuda"):
            torch.library.register_autocast(f"semianchor::{name}", device_type, torch.float32)

    @torch.library.register_fake("semianchor::soft_nms")
    def _soft_nms_fake(boxes, scores, classes, method, iou_threshold, sigma, min_score, max_kept):
        torch._check(boxes.dim() == 2, lambda: "boxes must have shape (R, 4)")
        torch._check(scores.dim() == 1, lambda: "scores must have shape (R,)")
        # The number of kept boxes depends on the data: an unbacked size, at most R and max_kept.
        P = torch.library.get_ctx().new_dynamic_size()
        torch._check(P <= boxes.shape[0])
        if max_kept >= 0:
            torch._check(P <= max_kept)
        return boxes.new_empty((P,), dtype=torch.int64), scores.new_empty((P,))

    for device_type in ("cpu", "cuda"):
        torch.library.register_autocast("semianchor::soft_nms", device_type, torch.float32)
