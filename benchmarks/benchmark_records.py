"""What the benchmark scripts share about a finished training run's folder (a sibling module of
the scripts: ``benchmarks/`` is their ``sys.path[0]``, not a package).

The NaN rule of :func:`final_metrics`: Detectron2's COCOEvaluator writes NaN for every metric when
the model made no detection at all (it logs "No predictions from the model!"); the COCO AP of an
empty result is 0, so such a run is recorded as 0 on every metric. Any other NaN is kept: the
metric is undefined for that evaluation (e.g. APs of a validation set with no small object, or
every metric when the log does not show the no-detection case), and a table shows it as "-".
"""

import json
import math
import os
from typing import Dict, Optional, Sequence, Tuple

__all__ = ["METRICS", "final_metrics", "no_detections", "save_record"]

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")

NO_PREDICTIONS = "No predictions from the model!"


def no_detections(output_dir: str) -> bool:
    """Whether the run's ``log.txt`` shows COCOEvaluator's no-detection case (False without a
    log)."""
    path = os.path.join(output_dir, "log.txt")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        return NO_PREDICTIONS in f.read()


def final_metrics(
    output_dir: str, metrics: Sequence[str] = METRICS
) -> Tuple[Dict[str, float], Optional[int]]:
    """The last evaluation the trainer recorded in ``<output_dir>/metrics.json`` (keys
    ``bbox/<metric>``), restricted to ``metrics`` (those it has), with the module's NaN rule, and
    the iteration it was recorded at."""
    path = os.path.join(output_dir, "metrics.json")
    last = None
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if "bbox/AP" in rec:
                last = rec
    if last is None:
        raise RuntimeError(f"no bbox/AP in {path}: did the evaluation run?")
    values = {m: last[f"bbox/{m}"] for m in metrics if f"bbox/{m}" in last}
    if values and all(math.isnan(v) for v in values.values()) and no_detections(output_dir):
        values = {m: 0.0 for m in values}
    return values, last.get("iteration")


def save_record(record: dict, out: Optional[str]) -> dict:
    """Writes ``record`` to ``out`` as indented JSON when a path is given; returns ``record``."""
    if out:
        with open(out, "w") as f:
            json.dump(record, f, indent=1)
    return record
