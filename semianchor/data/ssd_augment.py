"""SSD's training augmentation (Liu et al. 2016, Sec. 2.2 "Data augmentation"; PADet trains with it,
Sec. 4) as Detectron2 ``Augmentation``s, and a dataset mapper that lets them see the
boxes (Detectron2's ``DatasetMapper`` gives its augmentations the image only).

* :class:`PhotometricDistortion`: random brightness, contrast, saturation and hue, each with
  probability 0.5, contrast before or after the colour changes (SSD's order).
* :class:`Expand` ("zoom out"): with probability ``prob`` put the image at a random place of a
  canvas ``ratio`` in [1, ``max_ratio``] times larger, filled with the pixel mean.
* :class:`MinIoURandomCrop`: SSD's sampler: pick a minimum IoU from ``min_ious`` (or keep the
  image); try ``max_trials`` crops of 0.3-1 of each side and aspect ratio in [1/2, 2] until one
  has IoU >= it with some GT box whose centre it contains; boxes whose centre falls outside the
  crop are dropped (SSD's rule), the others clipped.
* :class:`SSDDatasetMapper`: ``DatasetMapper`` whose augmentations receive ``boxes`` and which
  drops the annotations the crop removed.

Resize to the square input (``T.Resize((S, S))``) and the flip are Detectron2's.
"""

import copy
from typing import Sequence

import cv2
import numpy as np
import torch
from fvcore.transforms.transform import CropTransform, PadTransform

import detectron2.data.transforms as T
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils

__all__ = ["PhotometricDistortion", "Expand", "MinIoURandomCrop", "SSDDatasetMapper"]


class _ColorTransform(T.Transform):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def apply_image(self, img):
        return self.fn(img)

    def apply_coords(self, coords):
        return coords

    def inverse(self):
        return T.NoOpTransform()


class PhotometricDistortion(T.Augmentation):
    """SSD's photometric distortions on a uint8 BGR/RGB image (values kept in [0, 255])."""

    def __init__(
        self, brightness: float = 32, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue: float = 18
    ):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        rng = np.random
        ops = []
        if rng.rand() < 0.5:
            delta = rng.uniform(-self.brightness, self.brightness)
            ops.append(lambda x: x + delta)
        contrast_first = rng.rand() < 0.5
        c = rng.uniform(*self.contrast) if rng.rand() < 0.5 else None
        if c is not None and contrast_first:
            ops.append(lambda x: x * c)
        s = rng.uniform(*self.saturation) if rng.rand() < 0.5 else None
        h = rng.uniform(-self.hue, self.hue) if rng.rand() < 0.5 else None
        if s is not None or h is not None:
            ops.append(lambda x: _saturation_hue(x, s, h))
        if c is not None and not contrast_first:
            ops.append(lambda x: x * c)

        def apply(img):
            out = img.astype(np.float32)
            for op in ops:
                out = np.clip(op(out), 0, 255)
            return out.astype(img.dtype) if img.dtype == np.uint8 else out

        return _ColorTransform(apply)


def _saturation_hue(img: np.ndarray, s, h) -> np.ndarray:
    hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
    if s is not None:
        hsv[..., 1] = np.clip(hsv[..., 1] * s, 0, 255)
    if h is not None:  # OpenCV's hue is in [0, 180): degrees / 2
        hsv[..., 0] = (hsv[..., 0] + h / 2.0) % 180
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)


class Expand(T.Augmentation):
    """Zoom out: the image on a canvas ``ratio`` in [1, max_ratio] times larger (pixel-mean
    fill)."""

    def __init__(
        self, max_ratio: float = 4.0, prob: float = 0.5, fill: Sequence[float] = (104, 117, 124)
    ):
        super().__init__()
        if max_ratio < 1:
            raise ValueError(f"Expand max_ratio must be >= 1, got {max_ratio}")
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        if np.random.rand() >= self.prob:
            return T.NoOpTransform()
        ratio = np.random.uniform(1, self.max_ratio)
        new_h, new_w = int(h * ratio), int(w * ratio)
        top, left = np.random.randint(0, new_h - h + 1), np.random.randint(0, new_w - w + 1)
        # PadTransform fills one value; the mean fill per channel is applied by _MeanPad
        return _MeanPad(left, top, new_w - w - left, new_h - h - top, w, h, tuple(self.fill))


class _MeanPad(PadTransform):
    def __init__(self, x0, y0, x1, y1, orig_w, orig_h, fill):
        super().__init__(x0, y0, x1, y1, orig_w, orig_h, pad_value=0)
        self.fill = fill

    def apply_image(self, img):
        h, w = img.shape[:2]
        canvas = np.empty(
            (h + self.y0 + self.y1, w + self.x0 + self.x1) + img.shape[2:], dtype=img.dtype
        )
        canvas[...] = np.asarray(self.fill, dtype=img.dtype).reshape((1, 1, -1))[
            ..., : canvas.shape[-1]
        ]
        canvas[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = img
        return canvas


def _iou(boxes: np.ndarray, crop: np.ndarray) -> np.ndarray:
    lt = np.maximum(boxes[:, :2], crop[:2])
    rb = np.minimum(boxes[:, 2:], crop[2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=1)
    area_b = (boxes[:, 2:] - boxes[:, :2]).clip(0).prod(axis=1)
    area_c = (crop[2:] - crop[:2]).prod()
    return inter / np.maximum(area_b + area_c - inter, 1e-9)


class MinIoURandomCrop(T.Augmentation):
    """SSD's crop sampler (module docstring). Needs ``boxes`` (use :class:`SSDDatasetMapper`)."""

    def __init__(
        self, min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_scale: float = 0.3, max_trials: int = 50
    ):
        super().__init__()
        self._init(locals())

    def get_transform(self, image, boxes):
        h, w = image.shape[:2]
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        choices = (None,) + tuple(self.min_ious)
        min_iou = choices[np.random.randint(len(choices))]
        if min_iou is None or len(boxes) == 0:
            return T.NoOpTransform()
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        for _ in range(self.max_trials):
            cw, ch = np.random.uniform(self.min_scale * w, w), np.random.uniform(
                self.min_scale * h, h
            )
            if not 0.5 <= ch / cw <= 2.0:
                continue
            x0, y0 = np.random.uniform(0, w - cw), np.random.uniform(0, h - ch)
            crop = np.array([x0, y0, x0 + cw, y0 + ch], dtype=np.float32)
            inside = (centres > crop[:2]).all(axis=1) & (centres < crop[2:]).all(axis=1)
            if inside.any() and _iou(boxes[inside], crop).max() >= min_iou:
                return CropTransform(int(x0), int(y0), int(cw), int(ch), orig_w=w, orig_h=h)
        return T.NoOpTransform()


class SSDDatasetMapper(DatasetMapper):
    """``DatasetMapper`` (image format, training flag, ``augmentations``) whose augmentations get
    the boxes, and which drops annotations whose centre a crop removed (SSD's rule)."""

    def __call__(self, dataset_dict):
        if not self.is_train:
            return super().__call__(dataset_dict)
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        annos = [a for a in dataset_dict.pop("annotations", []) if a.get("iscrowd", 0) == 0]
        boxes = np.array(
            [
                utils.BoxMode.convert(a["bbox"], a["bbox_mode"], utils.BoxMode.XYXY_ABS)
                for a in annos
            ],
            dtype=np.float32,
        ).reshape(-1, 4)
        aug_input = T.AugInput(image, boxes=boxes)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        h, w = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        centres = (
            (aug_input.boxes[:, :2] + aug_input.boxes[:, 2:]) / 2
            if len(annos)
            else np.zeros((0, 2))
        )
        keep = [
            a
            for a, c in zip(annos, centres)
            if 0 <= c[0] <= w and 0 <= c[1] <= h  # after a crop, the centre must still be inside
        ]
        keep = [utils.transform_instance_annotations(a, transforms, (h, w)) for a in keep]
        instances = utils.annotations_to_instances(keep, (h, w))
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
        return dataset_dict
