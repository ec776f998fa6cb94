"""Running the assignment analysis: models, the training-scale mapper, the image loop.

:func:`analyze` maps each image once, at the scale training sees, runs every model's public
assignment step on it (:func:`semianchor.engine.assignment.run_assignment`) and feeds one
:class:`~semianchor.analysis.assignment.AssignmentStats` per assigner;
``tools/analyze_assignment.py`` is its command line.

Static rules (anchors and GTs only) run without weights, with the backbone run once per input
size and the head not at all (with weights, the head runs for the IoU after regression);
dynamic rules (DLA, cleanliness, SAD, PADet's promotion and theta) read the model's predictions
and need ``weights``: without them :func:`build_models` refuses.
"""

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..engine.assignment import assignment_kind, is_static, run_assignment
from .assignment import AssignmentStats

__all__ = [
    "ASSIGNER_PRESETS",
    "AnalysisModel",
    "analyze",
    "assigner_preset",
    "build_models",
    "training_scale_mapper",
]

logger = logging.getLogger(__name__)


def assigner_preset(name: str):
    """A LazyCall of a named assigner for ``--assigners`` (swapped into a model config)."""
    from detectron2.config import LazyCall as L

    from ..modeling.assigners import ATSSAssigner, CleanlinessAssigner, MaxIoUAssigner

    presets = {
        # ATSS (Zhang et al. 2020, Sec. 3.2): top-9 per level by centre distance, mean + std
        "atss": L(ATSSAssigner)(topk=9, center_eps=0.01),
        # RetinaNet (Lin et al. 2017, Sec. 4): IoU >= 0.5 positive, [0.4, 0.5) ignored, and
        # each GT's best anchors positive (Detectron2's low-quality matches)
        "maxiou": L(MaxIoUAssigner)(
            thresholds=(0.4, 0.5), labels=(0, -1, 1), allow_low_quality_matches=True
        ),
        # the same without the best-anchor rule: a GT no anchor overlaps by 0.5 gets nothing
        "maxiou_strict": L(MaxIoUAssigner)(
            thresholds=(0.4, 0.5), labels=(0, -1, 1), allow_low_quality_matches=False
        ),
        # SSD (Liu et al. 2016, Sec. 2.2): best anchor per GT + IoU >= 0.5, no ignore band
        "ssd": L(MaxIoUAssigner)(thresholds=(0.5,), labels=(0, 1), allow_low_quality_matches=True),
        # Noisy Anchors' top-N IoU positives without the cleanliness terms (static)
        "topn": L(CleanlinessAssigner)(topn=50, soft_labels=False, reweight=False),
        # Noisy Anchors' cleanliness (Eq. 3-4): dynamic
        "cleanliness": L(CleanlinessAssigner)(topn=50, alpha=0.75, gamma=1.0),
    }
    if name not in presets:
        raise ValueError(
            f"unknown assigner {name!r} for --assigners; known: {sorted(presets)} "
            "(or 'config': the config's own)"
        )
    return presets[name]


ASSIGNER_PRESETS = ("atss", "maxiou", "maxiou_strict", "ssd", "topn", "cleanliness")


@dataclass
class AnalysisModel:
    """One assigner to analyse: its name, model, whether it is static, and why."""

    name: str
    model: torch.nn.Module
    static: bool
    why: str
    trained: bool = False
    seconds: float = 0.0
    feature_shapes: Dict = field(default_factory=dict)

    def assign(self, batched_inputs: List[Dict], iteration: int = 0):
        """:func:`run_assignment` of the model; a static rule without weights takes the fast path
        (feature map sizes cached per input size, the head not run)."""
        fast = self.static and not self.trained
        return run_assignment(
            self.model,
            batched_inputs,
            iteration=iteration,
            feature_shapes=self.feature_shapes if fast else None,
        )


def build_models(
    configs: Sequence[Tuple[str, object, Optional[str]]],
    assigners: Sequence[str] = (),
    num_classes: Optional[int] = None,
    device: str = "cpu",
) -> List[AnalysisModel]:
    """The models to analyse.

    Args:
        configs: (name, LazyConfig, weights path or None) per config.
        assigners: names of :func:`assigner_preset` (or "config") swapped into the *first*
            config's ``model.assigner``; empty: each config with its own assigner.
        num_classes: the dataset's class count, set as ``model.num_classes`` when the config
            has one (a checkpoint must then have been trained with as many).
        device: where the models run.

    Raises:
        ValueError: a dynamic rule without weights (the message names the static ones), a
            preset swapped into a model without ``model.assigner``, an unknown preset.
    """
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate

    entries = []
    for k, (name, cfg, weights) in enumerate(configs):
        if k == 0 and assigners:
            if "assigner" not in cfg.model:
                raise ValueError(
                    f"--assigners swaps model.assigner, which {name} does not have (a Detectron2 "
                    "baseline labels its anchors itself): analyse it without --assigners"
                )
            for a in assigners:
                model_cfg = copy.deepcopy(cfg.model)
                if a != "config":
                    model_cfg.assigner = assigner_preset(a)
                entries.append((a if a != "config" else name, model_cfg, weights))
        else:
            entries.append((name, cfg.model, weights))
    models, refused = [], []
    for name, model_cfg, weights in entries:
        if num_classes is not None and "num_classes" in model_cfg:
            model_cfg.num_classes = num_classes
        torch.manual_seed(0)
        model = instantiate(model_cfg).to(device).eval()
        assignment_kind(model)  # TypeError for a model without an assignment step
        static, why = is_static(model)
        if weights:
            DetectionCheckpointer(model).load(weights)
        elif not static:
            refused.append(f"  {name}: {why}")
        models.append(AnalysisModel(name, model, static, why, trained=bool(weights)))
    if refused:
        static_names = [m.name for m in models if m.static]
        raise ValueError(
            "dynamic assignment rules read a trained model's predictions, so they need --weights "
            "(a checkpoint of this config):\n"
            + "\n".join(refused)
            + (
                f"\nstatic rules run on the data alone: {', '.join(static_names)}"
                if static_names
                else ""
            )
        )
    return models


def training_scale_mapper(mapper_cfg) -> Tuple[object, List[str]]:
    """A ``DatasetMapper(is_train=True)`` that resizes as the config's training mapper does,
    without randomness: ``ResizeShortestEdge`` at the middle of its choices (the mean of a
    range), fixed ``Resize`` kept, every other (random) augmentation dropped. Returns the mapper
    and one note per change, for the report."""
    import detectron2.data.transforms as T
    from detectron2.config import instantiate
    from detectron2.data import DatasetMapper

    kept, notes = [], []
    for aug in [instantiate(a) for a in mapper_cfg.get("augmentations", [])]:
        if isinstance(aug, T.ResizeShortestEdge):
            lengths = list(aug.short_edge_length)
            if aug.is_range:
                short = int(round(sum(lengths) / len(lengths)))
            else:
                short = sorted(lengths)[len(lengths) // 2]
            kept.append(T.ResizeShortestEdge(short, max_size=aug.max_size))
            notes.append(
                f"ResizeShortestEdge{tuple(lengths)} (max {aug.max_size}) -> shortest edge "
                f"{short} (the middle of training's sizes)"
            )
        elif isinstance(aug, T.Resize):
            kept.append(aug)
            notes.append(f"{aug} kept")
        else:
            notes.append(f"{type(aug).__name__} dropped (random augmentation)")
    image_format = mapper_cfg.get("image_format", "BGR")
    return DatasetMapper(is_train=True, augmentations=kept, image_format=image_format), notes


def _progress(iterable, total: int, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, unit="img", dynamic_ncols=True, mininterval=0.5)


def analyze(
    models: Sequence[AnalysisModel],
    records: Sequence[Dict],
    mapper,
    num_classes: int,
    iteration: int = 0,
    max_examples: int = 3,
    progress: bool = True,
) -> Tuple[List[AssignmentStats], Dict]:
    """Stream ``records`` through ``mapper`` and every model's assignment step.

    Returns the stats (one per model, in order) and counters: ``images``, ``gts`` (in the
    records), ``gts_mapped`` (after the mapper: crowd annotations and boxes that are empty once
    clipped to the image are removed by Detectron2's mapper), ``crowd``, ``load_seconds`` (reading
    and mapping), ``seconds`` per model name.
    """
    stats = [AssignmentStats(m.name, num_classes, max_examples) for m in models]
    counters = {"images": 0, "gts": 0, "gts_mapped": 0, "crowd": 0, "load_seconds": 0.0}
    for index, record in enumerate(_progress(records, len(records), progress)):
        t0 = time.perf_counter()
        mapped = mapper(dict(record))
        counters["load_seconds"] += time.perf_counter() - t0
        annos = record.get("annotations", [])
        counters["images"] += 1
        counters["gts"] += len(annos)
        counters["crowd"] += sum(int(a.get("iscrowd", 0)) for a in annos)
        counters["gts_mapped"] += len(mapped["instances"])
        for m, s in zip(models, stats):
            t0 = time.perf_counter()
            assignment = m.assign([mapped], iteration)
            s.update(assignment, [index], [record["file_name"]])
            m.seconds += time.perf_counter() - t0
    counters["seconds"] = {m.name: m.seconds for m in models}
    return stats, counters


def projection(seconds_per_image: float, num_images: int) -> str:
    """``num_images`` at ``seconds_per_image``, in words."""
    total = seconds_per_image * num_images
    if total < 90:
        return f"{total:.0f} s"
    if total < 5400:
        return f"{total / 60:.1f} min"
    return f"{total / 3600:.1f} h" if math.isfinite(total) else "-"
