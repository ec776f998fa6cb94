"""Statistics of a label assignment over a dataset, accumulated image by image.

:class:`AssignmentStats` takes the :class:`~semianchor.engine.assignment.Assignment` of each batch
(the detector's own assignment step) and keeps, in memory bounded by the number of GTs (one small
row per GT) plus fixed-size histograms and counters:

* per GT: its class, size (in the input image the assigner sees, after the training resize), its
  number of positives, the pyramid levels they are on, the best IoU any anchor has with it, and
  per stage of a staged assigner its positives;
* per pyramid level and stage: positive / negative / ignored anchors (and, for detectors that
  classify locations, SAD, positive / negative / ignored locations);
* histograms of the IoU of positive anchors with their GT, before and (when the head ran) after
  regression, and of the soft targets and weights the assigner gives positives (cleanliness c,
  DLA's m, SAD's anchor-classification target mu_hat, PADet's theta-ignored anchors).

:meth:`AssignmentStats.tables` turns them into the rows of the report (overall, per size bin,
per level, per class); ``semianchor.analysis.report`` writes them.
"""

import heapq
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = [
    "AssignmentStats",
    "COCO_SIZE_BINS",
    "FINE_SIZE_EDGES",
    "ZeroPositiveExample",
    "box_iou",
    "size_bin_labels",
]

# COCO's small / medium / large: area < 32^2, < 96^2, else (in pixels^2)
COCO_SIZE_BINS = (("small", 0.0, 32.0), ("medium", 32.0, 96.0), ("large", 96.0, math.inf))
# finer bins of sqrt(area), in pixels of the input image
FINE_SIZE_EDGES = (0, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, math.inf)
IOU_BINS = 50  # histogram of IoUs on [0, 1]
VALUE_BINS = 40  # histogram of soft targets / weights on [0, VALUE_RANGE[name]]
_GT_CHUNK = 64  # GTs per IoU block when finding each GT's best anchor
_COMPACT_EVERY = 256  # images between foldings of the per-GT rows into single arrays


def size_bin_labels(edges: Sequence[float] = FINE_SIZE_EDGES) -> List[str]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        out.append(f">={lo:g}" if math.isinf(hi) else f"{lo:g}-{hi:g}")
    return out


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(P,) IoU of paired XYXY boxes (0 for empty unions)."""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(dim=1)  # noqa: E731
    union = area(a) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _best_anchor_iou(anchors: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
    """(M,) the highest IoU any of the (R, 4) anchors has with each of the (M, 4) GTs."""
    from detectron2.structures import Boxes, pairwise_iou

    if len(gts) == 0 or len(anchors) == 0:
        return torch.zeros(len(gts))
    out = [
        pairwise_iou(Boxes(gts[i : i + _GT_CHUNK]), Boxes(anchors)).max(dim=1).values
        for i in range(0, len(gts), _GT_CHUNK)
    ]
    return torch.cat(out)


@dataclass
class ZeroPositiveExample:
    """An image with GTs that got no positive (kept for the example pictures)."""

    image_index: int
    file_name: str
    gt_boxes: np.ndarray  # (M, 4) in the input image
    gt_classes: np.ndarray  # (M,)
    zero: np.ndarray  # (M,) bool: GTs without a positive

    def __lt__(self, other):  # heap order: fewer zero-positive GTs first
        return int(self.zero.sum()) < int(other.zero.sum())


# value histograms: name -> upper end of the range (values above are counted in the last bin)
VALUE_RANGE = {
    "soft target": 1.0,
    "weight": 4.0,
    "cleanliness c": 1.0,
    "DLA metric m": 1.0,
    "SAD mu_hat": 1.0,
}


class AssignmentStats:
    """Streaming statistics of one assigner over a dataset (module docstring).

    Args:
        name: the assigner's name in the report.
        num_classes: K (the GT classes' range).
        max_examples: images with zero-positive GTs kept for pictures (those with the most).
    """

    def __init__(self, name: str, num_classes: int, max_examples: int = 4):
        self.name = name
        self.num_classes = num_classes
        self.max_examples = max_examples
        self.method = ""
        self.level_names: List[str] = []
        self.stage_names: List[str] = []
        self.num_images = 0
        self.rows: Dict[str, List[np.ndarray]] = {
            k: []
            for k in (
                "image",
                "cls",
                "w",
                "h",
                "num_pos",
                "num_levels",
                "best_iou",
                "mean_pos_iou",
            )
        }
        self.stage_pos: Dict[str, List[np.ndarray]] = {}
        self.anchor_counts: Dict[str, np.ndarray] = {}  # stage -> (L, 3) pos, neg, ignored
        self.location_counts: Optional[np.ndarray] = None  # (L, 3)
        self.pos_iou_hist = np.zeros(IOU_BINS, np.int64)
        self.pos_iou_level = None  # (L, 2): sum, count
        self.reg_iou_hist = np.zeros(IOU_BINS, np.int64)
        self.iou_sums = {"before": [0.0, 0], "after": [0.0, 0]}  # exact sum, count
        self.value_hist: Dict[str, np.ndarray] = {}
        self.value_sum: Dict[str, Tuple[float, int]] = {}
        self.theta_ignored = 0
        self.examples: List[ZeroPositiveExample] = []
        self.file_names: Dict[int, str] = {}  # image index -> file name (for the tables)

    # ------------------------------------------------------------------ accumulation
    def update(self, assignment, image_indices: Sequence[int], file_names: Sequence[str]) -> None:
        """Add one batch's :class:`Assignment` (image indices / file names in batch order)."""
        stages = assignment.stages()
        if not self.level_names:
            self.method = assignment.method
            self.level_names = list(assignment.level_names)
            self.stage_names = [s for s, _, _ in stages]
            L = len(self.level_names)
            self.anchor_counts = {s: np.zeros((L, 3), np.int64) for s in self.stage_names}
            self.stage_pos = {s: [] for s in self.stage_names[:-1]}
            self.pos_iou_level = np.zeros((L, 2), np.float64)
        inputs, result = stages[-1][1], stages[-1][2]
        K = inputs.num_classes
        for stage, stage_inputs, stage_result in stages:
            self.anchor_counts[stage] += _level_counts(stage_inputs, stage_result, K)
        if "locations" in result.target_sets:
            counts = _level_counts(inputs, result["locations"], K, per_location=True)
            self.location_counts = (
                counts if self.location_counts is None else self.location_counts + counts
            )
        if "theta_ignored" in result.extras:
            self.theta_ignored += int(result.extras["theta_ignored"].sum())
        self._values(assignment, inputs, result, K)

        levels = _anchor_levels(inputs)
        positive = result.positive_mask(K) & (result.matched_gt >= 0)
        for i in range(inputs.num_images):
            m = int(inputs.gt_counts[i])
            self.num_images += 1
            self.file_names[int(image_indices[i])] = file_names[i]
            gts = inputs.gt_boxes[i, :m].float().cpu()
            anchors = inputs.image_anchors(i).float().cpu()
            pos = positive[i].cpu()
            gt_of = result.matched_gt[i].cpu()[pos]
            pos_anchors = anchors[pos]
            ious = box_iou(pos_anchors, gts[gt_of]) if m else torch.zeros(0)
            self.pos_iou_hist += _hist(ious.numpy(), 1.0, IOU_BINS)
            self._add_sum("before", ious)
            lv = levels[pos]
            np.add.at(self.pos_iou_level[:, 0], lv.numpy(), ious.double().numpy())
            np.add.at(self.pos_iou_level[:, 1], lv.numpy(), 1)
            if assignment.preds is not None and "reg" in assignment.preds and m:
                reg = assignment.preds["reg"][i]
                if reg.shape[0] == inputs.num_anchors and int(pos.sum()):
                    idx = pos.nonzero().flatten()
                    decoded = inputs.box_coder.decode(
                        pos_anchors[None],
                        reg[idx].float()[None].cpu(),
                        inputs.anchor_strides[idx].cpu(),
                    )[0]
                    after = torch.nan_to_num(box_iou(decoded, gts[gt_of]), nan=0.0)
                    self.reg_iou_hist += _hist(after.numpy(), 1.0, IOU_BINS)
                    self._add_sum("after", after)
            num_pos = torch.bincount(gt_of, minlength=m)[:m] if m else torch.zeros(0)
            level_mask = torch.zeros((max(m, 1), len(self.level_names)), dtype=torch.bool)
            level_mask[gt_of, lv] = True
            iou_sum = torch.zeros(m, dtype=torch.float64).index_add_(0, gt_of, ious.double())
            wh = (gts[:, 2:] - gts[:, :2]).clamp(min=0)
            self.rows["image"].append(np.full(m, image_indices[i], np.int64))
            self.rows["cls"].append(inputs.gt_classes[i, :m].cpu().numpy().copy())
            self.rows["w"].append(wh[:, 0].numpy().copy())
            self.rows["h"].append(wh[:, 1].numpy().copy())
            self.rows["num_pos"].append(num_pos.numpy().astype(np.int64))
            self.rows["num_levels"].append(level_mask[:m].sum(1).numpy())
            self.rows["best_iou"].append(_best_anchor_iou(anchors, gts).numpy())
            self.rows["mean_pos_iou"].append(
                (iou_sum / num_pos.clamp(min=1)).where(num_pos > 0, torch.nan).numpy()
            )
            for stage, stage_inputs, stage_result in stages[:-1]:
                sp = stage_result.positive_mask(K)[i] & (stage_result.matched_gt[i] >= 0)
                counts = torch.bincount(stage_result.matched_gt[i][sp].cpu(), minlength=m)[:m]
                self.stage_pos[stage].append(counts.numpy().astype(np.int64))
            zero = (num_pos == 0).numpy() if m else np.zeros(0, bool)
            if zero.any() and self.max_examples > 0:
                example = ZeroPositiveExample(
                    image_index=int(image_indices[i]),
                    file_name=file_names[i],
                    gt_boxes=gts.numpy(),
                    gt_classes=self.rows["cls"][-1],
                    zero=zero,
                )
                if len(self.examples) < self.max_examples:
                    heapq.heappush(self.examples, example)
                elif example.zero.sum() > self.examples[0].zero.sum():
                    heapq.heapreplace(self.examples, example)
        if len(self.rows["image"]) >= _COMPACT_EVERY:
            self._compact()

    def _compact(self) -> None:
        """Fold the per-image row pieces into one array per column (few long-lived objects:
        the process's memory stays flat over thousands of images)."""
        for parts in list(self.rows.values()) + list(self.stage_pos.values()):
            if len(parts) > 1:
                parts[:] = [np.concatenate(parts)]

    def _add_sum(self, name: str, values: torch.Tensor) -> None:
        self.iou_sums[name][0] += float(values.double().sum())
        self.iou_sums[name][1] += int(values.numel())

    def _iou_mean(self, name: str) -> float:
        total, n = self.iou_sums[name]
        return total / n if n else float("nan")

    def _values(self, assignment, inputs, result, K) -> None:
        positive = result.positive_mask(K)
        sources = {
            "soft target": result.soft_targets,
            "weight": result.weights,
            "cleanliness c": result.extras.get("cleanliness"),
            "DLA metric m": result.extras.get("metric"),
        }
        for name, values in sources.items():
            if values is not None and values.shape == positive.shape:
                self._add_values(name, values[positive])
        if "anchor_cls" in result.target_sets:
            ac = result["anchor_cls"]
            if ac.soft_targets is not None:
                self._add_values("SAD mu_hat", ac.soft_targets[ac.labels == 0])

    def _add_values(self, name: str, values: torch.Tensor) -> None:
        v = values.detach().float().cpu().numpy()
        v = v[np.isfinite(v)]
        hist = _hist(v, VALUE_RANGE[name], VALUE_BINS)
        self.value_hist[name] = self.value_hist.get(name, 0) + hist
        s, n = self.value_sum.get(name, (0.0, 0))
        self.value_sum[name] = (s + float(v.sum()), n + len(v))

    # ------------------------------------------------------------------ results
    def gt_table(self) -> Dict[str, np.ndarray]:
        """One row per GT: image, cls, w, h, size (sqrt area), num_pos, num_levels, best_iou,
        mean_pos_iou, and ``num_pos_<stage>`` for a staged assigner's earlier stages."""
        out = {
            k: (np.concatenate(v) if v else np.zeros(0, np.float64)) for k, v in self.rows.items()
        }
        out["size"] = np.sqrt(out["w"] * out["h"])
        for stage, parts in self.stage_pos.items():
            out[f"num_pos_{stage}"] = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return out

    def tables(
        self, class_names: Sequence[str] = (), edges: Sequence[float] = FINE_SIZE_EDGES
    ) -> Dict[str, List[Dict]]:
        """Rows of the report: "overall" (one row), "size" (COCO bins, then the fine bins),
        "levels", "classes". Keys are column names."""
        gt = self.gt_table()
        final = self.stage_names[-1] if self.stage_names else "final"
        counts = self.anchor_counts.get(final, np.zeros((0, 3), np.int64))
        overall = {"assigner": self.name, "images": self.num_images}
        overall.update(_gt_summary(gt, np.ones(len(gt["size"]), bool)))
        pos, neg, ign = (int(x) for x in counts.sum(0)) if len(counts) else (0, 0, 0)
        overall.update(
            {
                "pos anchors / image": pos / max(self.num_images, 1),
                "pos:neg:ign anchors": _ratio(pos, neg, ign),
                "mean IoU of positives": self._iou_mean("before"),
                "mean IoU after regression": self._iou_mean("after"),
                "GTs on >1 level": _share(gt["num_levels"] > 1),
            }
        )
        if self.location_counts is not None:
            lp, ln, li = (int(x) for x in self.location_counts.sum(0))
            overall["pos:neg:ign locations"] = _ratio(lp, ln, li)
        for stage in self.stage_names[:-1]:
            sp, sn, si = (int(x) for x in self.anchor_counts[stage].sum(0))
            overall[f"pos:neg:ign {stage}"] = _ratio(sp, sn, si)
            overall[f"pos / GT {stage}"] = _mean(gt[f"num_pos_{stage}"])
        if self.theta_ignored:
            overall["theta-ignored anchors / image"] = self.theta_ignored / self.num_images
        for name, (s, n) in self.value_sum.items():
            overall[f"mean {name}"] = s / n if n else float("nan")

        size_rows = []
        for label, lo, hi in COCO_SIZE_BINS:
            size_rows.append(_bin_row(self.name, f"COCO {label}", gt, lo, hi))
        for label, lo, hi in zip(size_bin_labels(edges), edges[:-1], edges[1:]):
            size_rows.append(_bin_row(self.name, label, gt, lo, hi))

        level_rows = []
        total_pos = max(int(counts[:, 0].sum()), 1) if len(counts) else 1
        for lv, name in enumerate(self.level_names):
            p, n, i = (int(x) for x in counts[lv])
            row = {
                "assigner": self.name,
                "level": name,
                "share of positives": p / total_pos,
                "pos anchors": p,
                "neg anchors": n,
                "ignored anchors": i,
                "pos:neg": _ratio(p, n),
                "mean IoU of positives": (
                    self.pos_iou_level[lv, 0] / self.pos_iou_level[lv, 1]
                    if self.pos_iou_level[lv, 1]
                    else float("nan")
                ),
            }
            if self.location_counts is not None:
                row["pos:neg locations"] = _ratio(*self.location_counts[lv][:2])
            level_rows.append(row)

        class_rows = []
        for k in range(self.num_classes):
            sel = gt["cls"] == k
            name = _class_name(class_names, k)
            class_rows.append({"assigner": self.name, "class": name, **_gt_summary(gt, sel)})
        return {
            "overall": [overall],
            "size": size_rows,
            "levels": level_rows,
            "classes": class_rows,
        }

    def worst(self, n: int = 5, class_names: Sequence[str] = ()) -> List[Dict]:
        """The ``n`` smallest GTs without a positive (image file, class, w x h in the input
        image, best anchor IoU)."""
        gt = self.gt_table()
        idx = np.nonzero(gt["num_pos"] == 0)[0]
        idx = idx[np.argsort(gt["size"][idx], kind="stable")][:n]
        return [
            {
                "image": os.path.basename(self.file_names.get(int(gt["image"][j]), "?")),
                "class": _class_name(class_names, int(gt["cls"][j])),
                "w": float(gt["w"][j]),
                "h": float(gt["h"][j]),
                "best anchor IoU": float(gt["best_iou"][j]),
            }
            for j in idx
        ]


# ----------------------------------------------------------------------------- helpers
def _class_name(class_names: Sequence[str], k: int) -> str:
    return class_names[k] if 0 <= k < len(class_names) else f"class {k}"


def _anchor_levels(inputs) -> torch.Tensor:
    return torch.repeat_interleave(
        torch.arange(len(inputs.num_anchors_per_level)),
        torch.as_tensor(inputs.num_anchors_per_level),
    )


def _level_counts(inputs, target_set, K: int, per_location: bool = False) -> np.ndarray:
    """(L, 3) positive, negative (background), ignored elements per level."""
    sizes = list(inputs.num_anchors_per_level)
    if per_location:
        sizes = [int(n) // a for n, a in zip(sizes, inputs.cell_anchors)]
    labels = target_set.labels.cpu()
    kk = target_set.num_classes if target_set.num_classes is not None else K
    out = np.zeros((len(sizes), 3), np.int64)
    for lv, part in enumerate(labels.split(sizes, dim=1)):
        out[lv] = [
            int(((part >= 0) & (part < kk)).sum()),
            int((part == kk).sum()),
            int((part < 0).sum()),
        ]
    return out


def _hist(values: np.ndarray, top: float, bins: int) -> np.ndarray:
    values = np.clip(np.asarray(values, np.float64), 0.0, top)
    return np.histogram(values, bins=bins, range=(0.0, top))[0].astype(np.int64)


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _share(mask: np.ndarray) -> float:
    return float(np.mean(mask)) if len(mask) else float("nan")


def _ratio(pos: int, *rest: int) -> str:
    """ "1 : a : b" per positive ("0 : a : b" without positives)."""
    if not pos:
        return " : ".join(["0"] + [str(int(r)) for r in rest])
    return " : ".join(["1"] + [f"{r / pos:.1f}" for r in rest])


def _gt_summary(gt: Dict[str, np.ndarray], sel: np.ndarray) -> Dict:
    n = gt["num_pos"][sel]
    zero = n == 0
    q = (lambda p: float(np.quantile(n, p))) if len(n) else (lambda p: float("nan"))
    return {
        "GTs": int(sel.sum()),
        "pos / GT mean": _mean(n),
        "pos / GT p10": q(0.1),
        "pos / GT median": q(0.5),
        "pos / GT p90": q(0.9),
        "GTs without positive": int(zero.sum()),
        "share without positive": _share(zero),
    }


def _bin_row(name: str, label: str, gt: Dict[str, np.ndarray], lo: float, hi: float) -> Dict:
    sel = (gt["size"] >= lo) & (gt["size"] < hi)
    row = {"assigner": name, "size (sqrt area, px)": label, **_gt_summary(gt, sel)}
    row["mean best anchor IoU"] = _mean(gt["best_iou"][sel])
    row["GTs on >1 level"] = _share(gt["num_levels"][sel] > 1)
    return row
