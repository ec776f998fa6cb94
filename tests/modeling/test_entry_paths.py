"""Paths that only a whole model or the yacs training tool reaches: SAD's no-AC inference through
``model(batched_inputs)`` (each image seeds its anchor pick from its own dict), DLA's
iterations per epoch read from registered datasets, ``AssignInputs.image_anchors`` and the
assigners' repr."""

import logging

import pytest
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog

from semianchor.modeling.assigners import AssignInputs, LabelAssigner
from semianchor.modeling.meta_arch.dla import iters_per_epoch_of
from semianchor.modeling.meta_arch.sad import noac_draw_seed

from . import golden_case as golden
from .test_golden_sad import inference_flat, sad


def _image(image_id):
    size = golden.SIDE
    return {
        "image": torch.zeros(3, size, size),
        "image_id": image_id,
        "height": size,
        "width": size,
    }


def _run_model_on(model, images):
    """``model(images)`` in eval mode, the backbone and head replaced by the hand-set outputs
    (the same predictions for every image)."""
    flat = {k: v.expand(len(images), *v.shape[1:]) for k, v in inference_flat(ac=False).items()}
    model.backbone.forward = lambda x: {"p0": golden.features([golden.GRID])[0]}
    model.head.forward = lambda features: golden.head_maps(model, flat, [golden.GRID])
    model.eval()
    with torch.no_grad():
        return [r["instances"] for r in model(images)]


def _seeded_pick(model, image_id):
    model._noac_seeds = [noac_draw_seed({"image_id": image_id}, model.noac_draw)]
    return golden.detections(model, inference_flat(ac=False))[0][0]


@pytest.mark.parametrize("draw", [0, 3])
def test_sad_without_ac_seeds_each_image_from_its_input_dict(draw):
    model = sad(ac=False, noac_draw=draw)
    ids = [7, 9, 7]
    expected = [_seeded_pick(model, image_id) for image_id in ids]
    if draw == 0:  # images 7 and 9 pick different anchors: the seed is the image's, not fixed
        assert not torch.equal(expected[0], expected[1])
    got = _run_model_on(model, [_image(i) for i in ids])
    for boxes, inst in zip(expected, got):
        torch.testing.assert_close(inst.pred_boxes.tensor, boxes)
    torch.testing.assert_close(got[0].pred_boxes.tensor, got[2].pred_boxes.tensor)
    # the seeds of one call are consumed and cleared after it
    assert model._noac_seeds == [] and model._noac_generator is None


def test_sad_with_ac_never_draws(monkeypatch):
    def no_draw(*args):
        raise AssertionError("with the AC head, inference draws no anchor")

    monkeypatch.setattr("semianchor.modeling.meta_arch.sad.noac_draw_seed", no_draw)
    model = sad(ac=True)
    model.backbone.forward = lambda x: {"p0": golden.features([golden.GRID])[0]}
    model.head.forward = lambda features: golden.head_maps(model, inference_flat(), [golden.GRID])
    model.eval()
    with torch.no_grad():
        model([_image(7)])
    assert model._noac_seeds == [] and model._noac_generator is None


@pytest.fixture
def three_image_dataset():
    name = "semianchor_test_iters_per_epoch"
    box = {"bbox": [0, 0, 4, 4], "bbox_mode": 0, "category_id": 0}
    dicts = [
        {"file_name": f"{i}.jpg", "image_id": i, "height": 8, "width": 8, "annotations": anns}
        for i, anns in enumerate([[box], [], [box, box]])
    ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).thing_classes = ["thing"]
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_dla_iters_per_epoch_counts_the_images_the_loader_keeps(three_image_dataset, caplog):
    names = [three_image_dataset]
    kept = dict(names=names, filter_empty=True, total_batch_size=4)
    assert iters_per_epoch_of(kept) == pytest.approx(2 / 4)  # the empty image is filtered out
    every = dict(names=names, filter_empty=False, total_batch_size=2)
    with caplog.at_level(logging.INFO, logger="semianchor.modeling.meta_arch.dla"):
        assert iters_per_epoch_of(every) == pytest.approx(3 / 2)
    assert "3 training images / batch 2 = 1.50 iterations per epoch" in caplog.text


def test_image_anchors_shared_and_per_image():
    shared = torch.tensor([[0.0, 0.0, 4.0, 4.0], [4.0, 4.0, 8.0, 8.0]])
    per_image = torch.stack([shared, shared + 1.0])
    fields = dict(
        num_anchors_per_level=[2],
        anchor_strides=torch.tensor([4.0, 4.0]),
        anchors_per_location=[1],
        gt_boxes=torch.zeros(2, 1, 4),
        gt_classes=torch.zeros(2, 1, dtype=torch.long),
        gt_counts=torch.tensor([0, 0]),
        num_classes=1,
    )
    one = AssignInputs(anchors=shared, **fields)
    assert torch.equal(one.image_anchors(0), shared) and torch.equal(one.image_anchors(1), shared)
    many = AssignInputs(anchors=per_image, **fields)
    assert torch.equal(many.image_anchors(1), shared + 1.0)
    assert torch.equal(many.image_anchors(0), shared)


def test_an_assigner_without_options_has_an_empty_repr():
    class NoOptions(LabelAssigner):
        def assign(self, inputs):
            raise AssertionError("not called")

    assert repr(NoOptions()) == "NoOptions()"


def test_tensor_anchors_need_their_level_sizes():
    from semianchor.modeling.anchors import generator_assign_inputs

    gen = golden.anchor_generator()
    gts = [golden.gt_instances([[0, 0, 16, 16]], [0])]
    with pytest.raises(ValueError, match="^anchors given as a tensor need num_anchors_per_level$"):
        generator_assign_inputs(gen, torch.zeros(8, 4), gts, num_classes=1)
    inputs = generator_assign_inputs(gen, torch.zeros(8, 4), gts, 1, num_anchors_per_level=[8])
    assert inputs.num_anchors_per_level == [8] and inputs.anchor_strides.tolist() == [16.0] * 8
