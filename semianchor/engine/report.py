"""End-of-training report: pictures a person can read, and where to go next.

:func:`write_report` (called by ``tools/lazyconfig_train_net.py`` after training, main process
only, ``--no-report`` to skip) writes under ``<output_dir>/report/``:

- ``predictions_<image>.png``: a few validation images, ground truth (left) beside the trained
  model's detections (right), boxes coloured by class, class names from the dataset metadata;
- ``assignment_<image>.png``: which anchors the model's label assigner makes positive for which
  GT, drawn as in the papers' figures (GT boxes, positive anchor centres as dots in their GT's
  colour, a legend with the counts; anchor boxes only on request). A staged assigner (PADet)
  gets one panel per stage (initial vs promoted anchors); SAD gets a second panel with its
  positive locations and the anchor-classification targets (mu_hat) of their anchors;
- ``loss.png``: the training losses (and learning rate) from ``metrics.json``;
- ``summary.txt``: AP/AP50, where the checkpoint, pictures and TensorBoard logs are, and the
  commands to serve the model and to train on one's own COCO json (also printed).

The pictures are drawn by :mod:`semianchor.visualization` (matplotlib's Agg canvas, no display);
the assignment comes from the detectors' public assignment step
(:func:`semianchor.engine.assignment.compute_assignment`).
"""

import logging
import os
import shlex
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..visualization import draw_assignment, draw_predictions, input_image_rgb, plot_loss_curve
from .assignment import assignment_kind, compute_assignment
from .classes import dataset_class_names

logger = logging.getLogger(__name__)

__all__ = ["write_report"]

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _display_path(path: str) -> str:
    """``path`` relative to the working directory when it is below it (commands to copy-paste)."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def _python() -> str:
    exe = _display_path(sys.executable)
    return exe if not os.path.isabs(exe) else "python"


def _dataset_names(dataset_cfg) -> List[str]:
    names = dataset_cfg.get("names", None) or dataset_cfg.get("name", None) or []
    return [names] if isinstance(names, str) else list(names)


def _own_data_config(config_file: str) -> str:
    """The COCO-json twin of a quickstart config (``x_bccd.py`` / ``x_shapes.py`` ->
    ``x_coco_json.py``) when it exists, else the quickstart ATSS one."""
    if config_file:
        for suffix in ("_bccd.py", "_shapes.py"):
            if config_file.endswith(suffix):
                twin = config_file[: -len(suffix)] + "_coco_json.py"
                if os.path.isfile(twin):
                    return _display_path(twin)
    return _display_path(os.path.join(_REPO_ROOT, "configs", "quickstart", "atss_R18_coco_json.py"))


def _pick(records: List[Dict], n: int) -> List[Dict]:
    """``n`` records spread over the dataset (deterministic), preferring images with objects."""
    with_objects = [r for r in records if r.get("annotations")] or records
    if n >= len(with_objects):
        return with_objects
    return [with_objects[int(i)] for i in np.linspace(0, len(with_objects) - 1, n).round()]


def _gt_of(record: Dict):
    from detectron2.structures import BoxMode

    boxes = [
        BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
        for a in record.get("annotations", [])
    ]
    classes = [a["category_id"] for a in record.get("annotations", [])]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(classes, dtype=np.int64)


def _stem(record: Dict) -> str:
    return os.path.splitext(os.path.basename(record["file_name"]))[0]


def write_report(
    cfg,
    model,
    results: Optional[Dict] = None,
    config_file: str = "",
    overrides: Sequence[str] = (),
    num_images: int = 4,
    score_thresh: float = 0.5,
    print_summary: bool = True,
) -> Dict:
    """Write the pictures and the summary of a finished training run (see the module docstring).

    Args:
        cfg: the LazyConfig the run was trained with (``train.output_dir``, ``dataloader``).
        model: the trained model (DDP-wrapped or not); it is run in eval mode and restored.
        results: the evaluation results (``{"bbox": {"AP": ..., "AP50": ...}}``), if any.
        config_file, overrides: the training command's config and ``key=value`` overrides, to
            write the follow-up commands (model overrides are repeated in the demo command).
        num_images: validation images drawn with their predictions.
        score_thresh: predictions drawn from this score on (0.5: after the quickstart's short
            schedule many duplicates score 0.3-0.5, and a cleaner picture reads better).

    Returns:
        dict with the paths written (``predictions``: list, ``assignment``: path or None,
        ``loss``, ``summary``) and the summary text (``text``).
    """
    from detectron2.config import instantiate
    from detectron2.data import DatasetMapper, MetadataCatalog
    from detectron2.data import detection_utils as utils

    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    output_dir = cfg.train.output_dir
    report_dir = os.path.join(output_dir, "report")
    os.makedirs(report_dir, exist_ok=True)
    net = getattr(model, "module", model)
    was_training = net.training
    written: Dict = {"predictions": [], "assignment": None}

    test_name = _dataset_names(cfg.dataloader.test.dataset)[0]
    metadata = MetadataCatalog.get(test_name)
    class_names = list(dataset_class_names(test_name) or [])
    test_mapper_cfg = cfg.dataloader.test.mapper
    image_format = test_mapper_cfg.get("image_format", "BGR")
    test_augs = [instantiate(a) for a in test_mapper_cfg.get("augmentations", [])]
    method = type(net).__name__

    # 1. validation images: ground truth beside the predictions
    records = _pick(instantiate(cfg.dataloader.test.dataset), num_images)
    test_mapper = DatasetMapper(is_train=False, augmentations=test_augs, image_format=image_format)
    net.eval()
    try:
        with torch.no_grad():
            for record in records:
                outputs = net([test_mapper(dict(record))])[0]["instances"].to("cpu")
                image = utils.read_image(record["file_name"], format="RGB")
                gt_boxes, gt_classes = _gt_of(record)
                written["predictions"].append(
                    draw_predictions(
                        image,
                        gt_boxes,
                        gt_classes,
                        outputs.pred_boxes.tensor.numpy(),
                        outputs.pred_classes.numpy(),
                        outputs.scores.numpy(),
                        class_names,
                        os.path.join(report_dir, f"predictions_{_stem(record)}.png"),
                        metadata=metadata,
                        score_thresh=score_thresh,
                        title=f"{method} on {test_name}: {os.path.basename(record['file_name'])}",
                    )
                )
    finally:
        net.train(was_training)

    # 2. the assignment of one training image, in the input resolution the anchors live in
    train_records = _pick(instantiate(cfg.dataloader.train.dataset), 1)
    train_name = _dataset_names(cfg.dataloader.train.dataset)[0]
    # is_train=True keeps the instances; the test-time resize and no flip: a reproducible picture
    assign_mapper = DatasetMapper(is_train=True, augmentations=test_augs, image_format=image_format)
    mapped = assign_mapper(dict(train_records[0]))
    try:
        assignment_kind(model)
    except TypeError as e:  # a model without an assignment step: no picture, say why
        logger.warning(f"No assignment picture: {e}")
    else:
        (assignment,) = compute_assignment(model, [mapped])
        image = input_image_rgb(mapped, image_format)
        train_classes = list(dataset_class_names(train_name) or class_names)
        written["assignment"] = draw_assignment(
            image,
            assignment,
            train_classes,
            os.path.join(report_dir, f"assignment_{_stem(train_records[0])}.png"),
            title=f"{assignment.method}\npositive anchors of {train_name}: "
            f"{os.path.basename(train_records[0]['file_name'])} "
            f"({image.shape[1]}x{image.shape[0]} input)",
        )

    # 3. the loss curve
    written["loss"] = plot_loss_curve(
        os.path.join(output_dir, "metrics.json"),
        os.path.join(report_dir, "loss.png"),
        title=f"{method} on {train_name}: training loss",
    )

    # 4. the summary
    written["text"] = _summary(
        cfg, results, config_file, overrides, test_name, records, report_dir, written, score_thresh
    )
    written["summary"] = os.path.join(report_dir, "summary.txt")
    with open(written["summary"], "w") as f:
        f.write(written["text"] + "\n")
    if print_summary:
        print(written["text"], flush=True)
    return written


def _summary(
    cfg, results, config_file, overrides, test_name, records, report_dir, written, score_thresh
) -> str:
    output_dir = _display_path(cfg.train.output_dir)
    checkpoint = os.path.join(output_dir, "model_final.pth")
    bbox = (results or {}).get("bbox", {})
    lines = ["", "=" * 100, f"Done: {output_dir}"]
    if "AP" in bbox:
        lines.append(
            f"  COCO box AP {bbox['AP']:.1f}, AP50 {bbox.get('AP50', float('nan')):.1f} "
            f"on {test_name} (the table above has the rest)"
        )
    else:
        lines.append("  COCO box AP: not evaluated (no evaluator or no evaluation results)")
    lines += [
        f"  checkpoint   {checkpoint}",
        f"  pictures     {_display_path(report_dir)}/  "
        "(predictions_*.png: ground truth | predictions,"
        " assignment_*.png: positive anchors per GT, loss.png)",
        f"  TensorBoard  tensorboard --logdir {output_dir}",
        "",
        "  Serve it on an image or a folder (writes PNGs with the detections):",
    ]
    model_opts = [o for o in overrides if o.startswith("model.")]
    demo = [
        _python(),
        _display_path(os.path.join(_REPO_ROOT, "tools", "demo.py")),
        "--config-file",
        _display_path(config_file) if config_file else "CONFIG.py",
        "--input",
        _display_path(records[0]["file_name"]) if records else "IMAGE_OR_FOLDER",
        "--output",
        os.path.join(output_dir, "demo"),
        "--weights",
        checkpoint,
        "--confidence-threshold",  # the report pictures' threshold
        f"{score_thresh:g}",
        *model_opts,
    ]
    lines.append("    " + " ".join(shlex.quote(a) for a in demo))
    lines += [
        "",
        "  Train on your own COCO json (the class names and count are read from it):",
        "    "
        + " ".join(
            [
                _python(),
                _display_path(os.path.join(_REPO_ROOT, "tools", "lazyconfig_train_net.py")),
                "--config-file",
                _own_data_config(config_file),
                "dataloader.train.dataset.json_file=/path/to/train.json",
                "dataloader.train.dataset.image_root=/path/to/images",
                "dataloader.test.dataset.json_file=/path/to/val.json",
                "dataloader.test.dataset.image_root=/path/to/images",
            ]
        ),
        "=" * 100,
    ]
    return "\n".join(lines)
