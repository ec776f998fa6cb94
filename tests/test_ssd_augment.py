"""SSD's augmentation for PADet: zoom-out moves boxes with the image, the min-IoU crop keeps a GT
it overlaps enough, photometric distortion keeps shape and range, the mapper drops boxes whose
centre a crop removed."""

import numpy as np
import pytest

import detectron2.data.transforms as T
from detectron2.structures import BoxMode

from semianchor.data.ssd_augment import (
    Expand,
    MinIoURandomCrop,
    PhotometricDistortion,
    SSDDatasetMapper,
    _iou,
)


def test_expand_moves_boxes_with_the_image():
    np.random.seed(0)
    img = np.full((40, 60, 3), 200, dtype=np.uint8)
    boxes = np.array([[10.0, 5.0, 30.0, 25.0]])
    aug = T.AugInput(img, boxes=boxes)
    T.AugmentationList([Expand(max_ratio=3.0, prob=1.0, fill=(1, 2, 3))])(aug)
    out, b = aug.image, aug.boxes
    assert out.shape[0] > 40 and out.shape[1] > 60  # ratio drawn in (1, 3]
    x0, y0 = int(b[0, 0] - 10), int(b[0, 1] - 5)
    assert (out[y0 : y0 + 40, x0 : x0 + 60] == 200).all()  # the image sits where the box moved
    filled = (out == np.array([1, 2, 3], dtype=np.uint8)).all(axis=-1).sum()
    assert filled == out.shape[0] * out.shape[1] - 40 * 60


def test_min_iou_crop_keeps_enough_of_a_gt():
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    boxes = np.array([[20.0, 20.0, 60.0, 70.0], [70.0, 10.0, 90.0, 30.0]])
    crops = 0
    for seed in range(60):
        np.random.seed(seed)
        aug = MinIoURandomCrop(min_ious=(0.5,))
        t = aug.get_transform(img, boxes)
        if isinstance(t, T.NoOpTransform):
            continue
        crops += 1
        crop = np.array([t.x0, t.y0, t.x0 + t.w, t.y0 + t.h], dtype=np.float32)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = (centres > crop[:2]).all(1) & (centres < crop[2:]).all(1)
        assert inside.any() and _iou(boxes[inside], crop).max() >= 0.5 - 1e-2  # int rounding
    assert crops > 10


def test_photometric_distortion_keeps_shape_and_range():
    np.random.seed(3)
    img = (np.random.rand(20, 30, 3) * 255).astype(np.uint8)
    for _ in range(20):
        out = PhotometricDistortion().get_transform(img).apply_image(img)
        assert out.shape == img.shape and out.dtype == np.uint8


def test_mapper_drops_boxes_whose_centre_the_crop_removed(tmp_path):
    import cv2

    path = str(tmp_path / "a.png")
    cv2.imwrite(path, np.zeros((100, 100, 3), dtype=np.uint8))
    record = {
        "file_name": path,
        "height": 100,
        "width": 100,
        "annotations": [
            {"bbox": [10, 10, 30, 30], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
            {"bbox": [80, 80, 99, 99], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1},
        ],
    }

    class FixedCrop(T.Augmentation):
        def get_transform(self, image, boxes):
            return T.CropTransform(0, 0, 50, 50)

    mapper = SSDDatasetMapper(is_train=True, augmentations=[FixedCrop()], image_format="BGR")
    out = mapper(record)
    inst = out["instances"]
    assert tuple(out["image"].shape) == (3, 50, 50)
    assert inst.gt_classes.tolist() == [0]
    assert inst.gt_boxes.tensor.tolist() == [[10.0, 10.0, 30.0, 30.0]]
    with pytest.raises(ValueError, match="max_ratio"):
        Expand(max_ratio=0.5)
