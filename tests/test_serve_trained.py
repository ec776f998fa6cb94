"""Train -> serve: a model trained with tools/lazyconfig_train_net.py on a COCO json with named
classes is served by tools/demo.py from the run's saved config.yaml and from the source config,
and the PNG it writes labels detections with the json's class names."""

import json
import os
import sys

import cv2
import pytest
from PIL import Image

from semianchor.data.shapes import _to_coco, load_shapes

from .conftest import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import demo  # noqa: E402

# deliberately not the shapes' own names, and non-contiguous ids (Detectron2 sorts by id)
CATEGORIES = [(7, "pebble"), (3, "slab"), (12, "wedge"), (5, "hoop")]


def write_named_coco(tmp_path):
    """The tiny shapes split as a COCO json whose categories have new names and ids."""
    records = load_shapes("semianchor_shapes_tiny")
    image_root = os.path.dirname(records[0]["file_name"])
    json_file = tmp_path / "named.json"
    json_file.write_text(json.dumps(_to_coco(records, CATEGORIES)))
    return str(json_file), image_root


@pytest.fixture(scope="module")
def trained_on_json(tmp_path_factory, train_net):
    from detectron2.engine import default_argument_parser

    tmp = tmp_path_factory.mktemp("serve")
    json_file, image_root = write_named_coco(tmp)
    out = str(tmp / "run")
    overrides = [
        f"dataloader.train.dataset.json_file={json_file}",
        f"dataloader.train.dataset.image_root={image_root}",
        f"dataloader.test.dataset.json_file={json_file}",
        f"dataloader.test.dataset.image_root={image_root}",
        "dataloader.train.dataset.name=test_serve_named_train",
        "dataloader.test.dataset.name=test_serve_named_val",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
    ]
    config = os.path.join(REPO, "configs", "quickstart", "atss_R18_coco_json.py")
    args = default_argument_parser().parse_args(
        [
            "--config-file",
            config,
            *overrides,
            "train.device=cpu",
            "train.max_iter=3",
            "train.eval_period=0",
            f"train.output_dir={out}",
        ]
    )
    train_net.main(args)
    images = tmp / "images"
    images.mkdir()
    rec = load_shapes("semianchor_shapes_tiny")[0]
    os.symlink(rec["file_name"], images / os.path.basename(rec["file_name"]))
    return out, config, overrides, str(images)


def _served_classes(written):
    classes = set()
    for path in written:
        records = json.loads(Image.open(path).text["detections"])
        assert cv2.imread(path) is not None
        classes |= {r["class"] for r in records}
    return classes


@pytest.mark.parametrize("source", ["saved config.yaml", "source config"])
def test_demo_serves_a_model_trained_on_a_coco_json(trained_on_json, tmp_path, source):
    out, config, overrides, images = trained_on_json
    if source == "saved config.yaml":
        argv = ["--config-file", os.path.join(out, "config.yaml")]
    else:
        argv = ["--config-file", config]
    argv += [
        "--input",
        images,
        "--output",
        str(tmp_path / "png"),
        "--weights",
        os.path.join(out, "model_final.pth"),
        "--confidence-threshold",
        "0.0",  # an almost untrained model: every candidate is drawn
        "--device",
        "cpu",
    ]
    if source == "source config":
        argv += overrides
    written = demo.main(argv)
    assert len(written) == 1
    classes = _served_classes(written)
    assert classes, "no detections drawn"
    assert classes <= {name for _, name in CATEGORIES}, classes


@pytest.mark.parametrize(
    "config, num_classes",
    [
        ("configs/COCO-Detection/atss_R_50_FPN_1x.py", 80),
        ("configs/quickstart/atss_R18_shapes.py", 4),
    ],
)
def test_registered_datasets_give_their_class_names(config, num_classes):
    from detectron2.config import LazyConfig

    from semianchor.engine.predictor import lazy_test_metadata

    meta = lazy_test_metadata(LazyConfig.load(os.path.join(REPO, config)))
    assert len(meta.thing_classes) == num_classes


def test_training_takes_the_class_count_from_the_json(trained_on_json):
    """No model.num_classes given: the run's model and saved config have the json's 4 classes."""
    import torch

    from detectron2.config import LazyConfig

    out = trained_on_json[0]
    assert LazyConfig.load(os.path.join(out, "config.yaml")).model.num_classes == len(CATEGORIES)
    state = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu")["model"]
    cls_bias = [v for k, v in state.items() if k.endswith("cls_score.bias")]
    assert cls_bias and cls_bias[0].numel() == len(CATEGORIES)


def test_a_given_class_count_below_the_json_is_an_error(tmp_path):
    from detectron2.config import LazyConfig

    from semianchor.engine.classes import resolve_num_classes

    json_file, image_root = write_named_coco(tmp_path)
    cfg = LazyConfig.load(os.path.join(REPO, "configs", "quickstart", "retinanet_R18_coco_json.py"))
    cfg.dataloader.train.dataset.json_file = json_file
    cfg.dataloader.train.dataset.image_root = image_root
    resolve_num_classes(cfg)
    assert cfg.model.num_classes == len(CATEGORIES)
    cfg.model.num_classes = 6  # more than the data: kept (extra outputs are never positive)
    resolve_num_classes(cfg)
    assert cfg.model.num_classes == 6
    cfg.model.num_classes = 2
    with pytest.raises(ValueError, match="model.num_classes=2 but the training data has 4"):
        resolve_num_classes(cfg)
