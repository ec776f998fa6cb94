#!/usr/bin/env python
"""Train and evaluate a detector described by a LazyConfig (``configs/**/*.py``).

Detectron2's command line::

    python tools/lazyconfig_train_net.py --config-file CONFIG [--num-gpus N] [--resume] \
        [--eval-only] [--num-machines M --machine-rank R --dist-url URL] [key=value ...]

- Training: AMPTrainer (``train.amp.enabled=True``, CUDA only) or SimpleTrainer, with the standard
  hooks (iteration timer, LR schedule, periodic checkpoints, evaluation every
  ``train.eval_period`` iterations and at the end, metrics printed with ETA and written to
  ``metrics.json`` and TensorBoard), all under ``train.output_dir``.
- ``--resume`` continues from ``train.output_dir/last_checkpoint`` at the iteration it stopped.
- ``--eval-only train.init_checkpoint=PATH`` evaluates a checkpoint with COCOEvaluator.
- ``train.device``: ``auto`` (the default: cuda when available, else cpu), ``cpu`` or ``cuda``.
  ``--num-gpus N`` starts N processes; without CUDA they train on CPU over gloo.
- A non-finite loss stops training with an error naming the iteration and the loss terms.
- After training, the main process writes a report under ``train.output_dir/report/``
  (``semianchor.engine.report``): validation images with predictions beside the ground truth, the
  label assignment of a training image, the loss curve, and a summary (AP, where the checkpoint,
  pictures and TensorBoard logs are, the commands to serve the model and to train on one's own
  COCO json). ``--no-report`` skips it; ``--report-images N`` sets how many images are drawn.

Importing ``semianchor`` registers its META_ARCHs and the embedded ``semianchor_shapes_*``
datasets; COCO-format json datasets are named in the config (``configs/common/data/coco_json.py``).
"""

import logging
import os
import sys
import warnings

import torch

# semianchor first: it registers META_ARCHs and datasets and installs its narrow filters for the
# dependencies' start-up warnings before Detectron2's modules emit them
try:
    import semianchor  # noqa: F401
except ModuleNotFoundError:  # run from a checkout that is not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import semianchor  # noqa: F401

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.engine import (  # noqa: E402
    AMPTrainer,
    SimpleTrainer,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    default_writers,
    hooks,
    launch,
)
from detectron2.evaluation import inference_on_dataset, print_csv_format  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

import semianchor.data  # noqa: F401,E402  (registers semianchor_shapes_*)
from semianchor.engine.classes import dataset_class_names, resolve_num_classes  # noqa: E402
from semianchor.engine.init_weights import warn_if_missing_init_weights  # noqa: E402

logger = logging.getLogger("detectron2.lazyconfig_train_net")


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; an explicit cuda device without CUDA is an
    error."""
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"train.device={device} but CUDA is not available; use train.device=cpu (or auto)"
        )
    return device


def _dataset_names(dataset_cfg):
    """The DatasetCatalog names a dataloader's ``dataset`` config refers to."""
    names = dataset_cfg.get("names", None) or dataset_cfg.get("name", None) or []
    return [names] if isinstance(names, str) else list(names)


def check_num_classes(cfg) -> None:
    """Fail early when the model has fewer classes than the training data.

    Must run after the train loader is instantiated: COCO json datasets register (and get their
    ``thing_classes``) on first use.
    """
    num_classes = cfg.model.get("num_classes", None)
    if num_classes is None:
        return
    for name in _dataset_names(cfg.dataloader.train.dataset):
        classes = dataset_class_names(name)
        if classes is None:
            continue
        if len(classes) > num_classes:
            raise ValueError(
                f"Dataset {name!r} has {len(classes)} classes {classes} but "
                f"model.num_classes={num_classes}; set model.num_classes={len(classes)}"
            )
        if len(classes) < num_classes:
            logger.warning(
                f"Dataset {name!r} has {len(classes)} classes but model.num_classes="
                f"{num_classes}; the extra outputs are never positive"
            )


def do_test(cfg, model):
    """COCO evaluation of ``model`` on ``cfg.dataloader.test``; returns the results dict."""
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    if comm.is_main_process():
        print_csv_format(results)
    return results


def _ddp(cfg, model):
    ddp_kwargs = dict(cfg.train.ddp)
    if cfg.train.device == "cpu":
        ddp_kwargs["device_ids"] = None  # CPU modules take no device_ids (gloo backend)
    return create_ddp_model(model, **ddp_kwargs)


def set_training_schedule(cfg, model) -> None:
    """Give models whose losses follow training progress in epochs (DLA's alpha schedule) the
    schedule this run really uses: epochs of the filtered training set at the total batch size."""
    if not hasattr(model, "set_training_schedule"):
        return
    dataset = instantiate(cfg.dataloader.train.dataset)
    iters_per_epoch = len(dataset) / cfg.dataloader.train.total_batch_size
    model.set_training_schedule(iters_per_epoch=iters_per_epoch, max_iter=cfg.train.max_iter)
    logger.info(
        f"Training schedule: {len(dataset)} images / "
        f"batch {cfg.dataloader.train.total_batch_size} = "
        f"{iters_per_epoch:.2f} iterations per epoch, "
        f"{cfg.train.max_iter / iters_per_epoch:.2f} epochs"
    )


def do_train(args, cfg):
    """Train ``cfg.model`` for ``cfg.train.max_iter`` iterations; returns the last eval results."""
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)

    train_loader = instantiate(cfg.dataloader.train)
    check_num_classes(cfg)
    set_training_schedule(cfg, model)

    model = _ddp(cfg, model)
    use_amp = cfg.train.amp.enabled
    if use_amp and cfg.train.device == "cpu":
        warnings.warn("train.amp.enabled=True needs CUDA; training in float32 on CPU")
        use_amp = False
    trainer = (AMPTrainer if use_amp else SimpleTrainer)(model, train_loader, optim)
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    last_results = {}

    def test_and_keep():
        last_results.clear()
        last_results.update(do_test(cfg, model))
        return last_results

    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            (
                hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
                if comm.is_main_process()
                else None
            ),
            hooks.EvalHook(cfg.train.eval_period, test_and_keep),
            (
                hooks.PeriodicWriter(
                    default_writers(cfg.train.output_dir, cfg.train.max_iter),
                    period=cfg.train.log_period,
                )
                if comm.is_main_process()
                else None
            ),
        ]
    )

    resuming = args.resume and checkpointer.has_checkpoint()
    warn_if_missing_init_weights(cfg, resuming=resuming, logger=logger)
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    # the checkpoint stores the last finished iteration: continue with the next one
    start_iter = trainer.iter + 1 if resuming else 0
    try:
        trainer.train(start_iter, cfg.train.max_iter)
    except FloatingPointError as e:
        raise FloatingPointError(
            f"Training stopped: non-finite loss. {e}\nLower optimizer.lr or lengthen the warmup; "
            f"checkpoints so far are in {cfg.train.output_dir}"
        ) from e
    if comm.is_main_process() and not getattr(args, "no_report", False):
        from semianchor.engine.report import write_report

        write_report(
            cfg,
            model,
            last_results,
            config_file=args.config_file,
            overrides=args.opts,
            num_images=getattr(args, "report_images", 4),
        )
    return last_results


def setup(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    cfg.train.device = resolve_device(cfg.train.get("device", "auto"))
    resolve_num_classes(cfg)  # before the config is saved: config.yaml holds the real count
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="semianchor")
    return cfg


def main(args):
    """Entry point of each process; returns the evaluation results (dict) of the main process."""
    cfg = setup(args)
    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = _ddp(cfg, model)
        DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        results = do_test(cfg, model)
    else:
        results = do_train(args, cfg)
    if comm.get_world_size() > 1:
        # every rank leaves together: the others wait for the main process's report, and the
        # process group is torn down before exit (a rank exiting while another still holds the
        # gloo connection aborts with "terminate called without an active exception")
        comm.synchronize()
        torch.distributed.destroy_process_group()
    return results


def argument_parser():
    """Detectron2's command line plus the end-of-training report's options."""
    parser = default_argument_parser()
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="do not write the end-of-training report (pictures, loss curve, summary)",
    )
    parser.add_argument(
        "--report-images",
        type=int,
        default=4,
        help="validation images drawn with their predictions in the report (default 4)",
    )
    return parser


def invoke_main() -> None:
    args = argument_parser().parse_args()
    if args.report_images < 1:
        raise SystemExit(f"--report-images must be >= 1, got {args.report_images}")
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()  # pragma: no cover
