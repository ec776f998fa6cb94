"""The embedded default dataset: "semianchor shapes", generated deterministically on the fly.

Each image is a noisy, textured canvas with filled shapes of four classes (rectangle, ellipse,
triangle, ring). Objects vary in scale (from ~6 px to ~half the image) and aspect ratio (1:4 to
4:1) and overlap each other: later shapes occlude earlier ones, but a shape that would hide most
of an earlier one is not drawn, so every visible shape is annotated (with the box of its visible
part). Some images are crowded (dozens of small, clustered objects) and some have no object at
all. Colours are random per object (but contrast with the background), so the class is carried by
the shape alone.

Images are rendered once (JPEG, ~4 s for the 512 training images) into a cache directory
(``$SEMIANCHOR_CACHE`` or ``~/.cache/semianchor``), together with the split's COCO json, so every
Detectron2 component (``DatasetMapper``, ``COCOEvaluator``, the demo) reads them like any other
dataset. The content depends only on the split's parameters and ``_GENERATOR_VERSION``.
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

CLASS_NAMES = ["rectangle", "ellipse", "triangle", "ring"]
CLASS_COLORS = [(220, 20, 60), (0, 128, 255), (60, 180, 75), (255, 165, 0)]
MIN_PIXELS = 12  # smaller shapes (after clipping/occlusion) are not objects
MIN_VISIBLE = 0.4  # fraction of a shape that must stay visible under later shapes
MIN_CONTRAST = 60.0  # RGB distance between an object's colour and the background's mean colour
_GENERATOR_VERSION = 4  # bump when the rendering changes: it is part of the cache key


@dataclass(frozen=True)
class ShapesSplit:
    num_images: int
    seed: int
    image_size: int = 256
    empty_fraction: float = 0.08  # images with no object at all
    crowded_fraction: float = 0.15  # images with many small objects
    max_objects: int = 12  # for regular images
    crowded_objects: int = 40


SPLITS = {
    "semianchor_shapes_train": ShapesSplit(num_images=512, seed=0),
    "semianchor_shapes_val": ShapesSplit(num_images=96, seed=10_000),
    # a tiny split for tests and smoke runs
    "semianchor_shapes_tiny": ShapesSplit(num_images=16, seed=20_000, image_size=128),
    # crowded small objects (30-60 tries of shapes of 3-12% of 512 px per image, those hidden by
    # earlier ones skipped; image 1 is empty, as in every split), for the assignment analysis
    # (tools/analyze_assignment.py); generated on first use
    "semianchor_shapes_crowded": ShapesSplit(
        num_images=64,
        seed=30_000,
        image_size=512,
        empty_fraction=0.0,
        crowded_fraction=1.0,
        crowded_objects=60,
    ),
}


def _cache_root() -> str:
    root = os.environ.get(
        "SEMIANCHOR_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "semianchor")
    )
    return os.path.join(root, "shapes")


def _split_dir(name: str, split: ShapesSplit) -> str:
    key = hashlib.sha1(
        json.dumps([name, asdict(split), _GENERATOR_VERSION], sort_keys=True).encode()
    ).hexdigest()[:10]
    return os.path.join(_cache_root(), f"{name}-{key}")


def _shape_mask(cls: int, x0: float, y0: float, w: float, h: float, rng) -> np.ndarray:
    """Filled mask of one shape in a local canvas of shape (ceil(y0 + h), ceil(x0 + w)).

    (x0, y0) is the sub-pixel offset of the shape's box inside the canvas, so drawing costs the
    object's area, not the image's.
    """
    import cv2

    x1, y1 = x0 + w, y0 + h
    mask = np.zeros((int(np.ceil(y1)), int(np.ceil(x1))), dtype=np.uint8)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    axes = (max(int(w / 2), 1), max(int(h / 2), 1))
    center = (int(round(cx)), int(round(cy)))
    if cls == 0:  # rectangle
        corner0, corner1 = (int(round(x0)), int(round(y0))), (
            int(round(x1)) - 1,
            int(round(y1)) - 1,
        )
        cv2.rectangle(mask, corner0, corner1, 1, -1)
    elif cls == 1:  # ellipse
        cv2.ellipse(mask, center, axes, 0, 0, 360, 1, -1)
    elif cls == 2:  # triangle, apex anywhere on the top edge
        apex_x = x0 + rng.uniform(0.2, 0.8) * w
        pts = np.array([[apex_x, y0], [x1 - 1, y1 - 1], [x0, y1 - 1]], dtype=np.int32)
        cv2.fillPoly(mask, [pts], 1)
    else:  # ring: an ellipse outline ~18% of the short side thick
        thickness = max(int(min(w, h) * 0.18), 1)
        cv2.ellipse(mask, center, axes, 0, 0, 360, 1, thickness)
    return mask.astype(bool)


def _contrasting_color(rng, background: np.ndarray) -> np.ndarray:
    """A random colour at least MIN_CONTRAST (L2, RGB) away from the background's mean colour."""
    for _ in range(20):
        color = rng.uniform(0, 255, size=3)
        if np.linalg.norm(color - background) >= MIN_CONTRAST:
            break
    return color


class _Object:
    """A drawn shape: class, integer offset of its local canvas, visible part, full area."""

    def __init__(self, cls: int, ox: int, oy: int, mask: np.ndarray):
        self.cls, self.ox, self.oy = cls, ox, oy
        self.visible = mask.copy()
        self.full_area = int(mask.sum())

    def overlap(self, ox: int, oy: int, mask: np.ndarray):
        """Slices (into self.visible, into mask) of the overlap with a mask at (ox, oy), or None."""
        h, w = self.visible.shape
        mh, mw = mask.shape
        x_lo, y_lo = max(self.ox, ox), max(self.oy, oy)
        x_hi, y_hi = min(self.ox + w, ox + mw), min(self.oy + h, oy + mh)
        if x_lo >= x_hi or y_lo >= y_hi:
            return None
        mine = (slice(y_lo - self.oy, y_hi - self.oy), slice(x_lo - self.ox, x_hi - self.ox))
        theirs = (slice(y_lo - oy, y_hi - oy), slice(x_lo - ox, x_hi - ox))
        return mine, theirs


def _render_image(split: ShapesSplit, index: int):
    """Returns (uint8 HxWx3 RGB image, list of (class, [x0, y0, x1, y1])).

    Image 0 of every split is crowded and image 1 is empty, so that even the tiny split has both.
    A new shape is skipped when it would hide more than 1 - MIN_VISIBLE of an earlier one: every
    visible shape is annotated (with the box of its visible part) and its class stays readable.
    """
    rng = np.random.default_rng([split.seed, index])
    size = split.image_size
    # smooth coloured background + pixel noise
    base = rng.uniform(40, 200, size=3)
    grad = np.linspace(-30, 30, size)[None, :, None] * rng.uniform(-1, 1, size=3)
    noise = 12 * rng.standard_normal((size, size, 3), dtype=np.float32)
    image = np.clip(base + grad + noise, 0, 255)

    kind = rng.uniform()
    if index == 1 or (index > 1 and kind < split.empty_fraction):
        n, scale_range = 0, (0.0, 0.0)
    elif index == 0 or kind < split.empty_fraction + split.crowded_fraction:
        n = int(rng.integers(split.crowded_objects // 2, split.crowded_objects + 1))
        scale_range = (0.03, 0.12)
    else:
        n, scale_range = int(rng.integers(1, split.max_objects + 1)), (0.04, 0.55)

    crowded = scale_range[1] <= 0.12 and n > 0
    cluster = rng.uniform(size * 0.3, size * 0.7, size=2)
    objects: List[_Object] = []
    for _ in range(n):
        cls = int(rng.integers(len(CLASS_NAMES)))
        area = (rng.uniform(*scale_range) * size) ** 2
        ratio = float(np.exp(rng.uniform(np.log(0.25), np.log(4.0))))  # h / w
        w = max(np.sqrt(area / ratio), 6.0)
        h = max(w * ratio, 6.0)
        w, h = min(w, size * 0.9), min(h, size * 0.9)
        if crowded:  # crowded images cluster their objects so that many overlap
            cx = np.clip(cluster[0] + rng.normal(0, size * 0.15), w / 2, size - w / 2)
            cy = np.clip(cluster[1] + rng.normal(0, size * 0.15), h / 2, size - h / 2)
            x0, y0 = cx - w / 2, cy - h / 2
        else:
            x0 = rng.uniform(0, size - w)
            y0 = rng.uniform(0, size - h)
        ox, oy = int(x0), int(y0)
        mask = _shape_mask(cls, x0 - ox, y0 - oy, w, h, rng)[: size - oy, : size - ox]
        if mask.sum() < MIN_PIXELS:
            continue
        overlaps = [(obj, obj.overlap(ox, oy, mask)) for obj in objects]
        overlaps = [(obj, sl) for obj, sl in overlaps if sl is not None]
        if any(
            obj.visible.sum() - (obj.visible[mine] & mask[theirs]).sum()
            < max(MIN_VISIBLE * obj.full_area, MIN_PIXELS)
            for obj, (mine, theirs) in overlaps
        ):
            continue  # would (almost) hide an earlier shape
        color = _contrasting_color(rng, base)
        patch = image[oy : oy + mask.shape[0], ox : ox + mask.shape[1]]
        patch[mask] = np.clip(color + rng.normal(0, 8, size=(int(mask.sum()), 1)), 0, 255)
        for obj, (mine, theirs) in overlaps:  # occlusion by the new shape
            obj.visible[mine] &= ~mask[theirs]
        objects.append(_Object(cls, ox, oy, mask))

    annos = []
    for obj in objects:
        ys, xs = np.nonzero(obj.visible)
        x_lo, y_lo = float(obj.ox + xs.min()), float(obj.oy + ys.min())
        x_hi, y_hi = float(obj.ox + xs.max() + 1), float(obj.oy + ys.max() + 1)
        annos.append((obj.cls, [x_lo, y_lo, x_hi, y_hi]))
    return image.astype(np.uint8), annos


def _to_coco(records: List[Dict], categories: Optional[List[Tuple[int, str]]] = None) -> Dict:
    """The split as a COCO instances json, for COCOEvaluator/pycocotools. ``categories``: one
    (COCO id, name) per contiguous class id; by default ids 1..K with the shapes' names."""
    if categories is None:
        categories = [(i + 1, n) for i, n in enumerate(CLASS_NAMES)]
    images, annotations = [], []
    for r in records:
        images.append(
            {
                "id": r["image_id"],
                "file_name": os.path.basename(r["file_name"]),
                "height": r["height"],
                "width": r["width"],
            }
        )
        for a in r["annotations"]:
            x0, y0, x1, y1 = a["bbox"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": r["image_id"],
                    "category_id": categories[a["category_id"]][0],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    coco_categories = [{"id": cid, "name": n} for cid, n in categories]
    return {"images": images, "annotations": annotations, "categories": coco_categories}


def _write_json_atomic(path: str, content) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(content, f)
    os.replace(tmp, path)  # atomic: concurrent workers/processes see a whole file or none


def _generate(name: str, split: ShapesSplit) -> List[Dict]:
    import cv2

    out_dir = _split_dir(name, split)
    index_file = os.path.join(out_dir, "dataset.json")
    if os.path.exists(index_file):
        with open(index_file) as f:
            return json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    records = []
    for i in range(split.num_images):
        image, annos = _render_image(split, i)
        file_name = os.path.join(out_dir, f"{i:05d}.jpg")
        tmp = file_name + f".{os.getpid()}.tmp.jpg"
        # JPEG: 5x faster to encode than PNG on these noisy canvases, and what real datasets use
        cv2.imwrite(tmp, image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        os.replace(tmp, file_name)
        records.append(
            {
                "file_name": file_name,
                "image_id": i,
                "height": split.image_size,
                "width": split.image_size,
                "annotations": [
                    {"bbox": box, "bbox_mode": 0, "category_id": cls, "iscrowd": 0}  # 0 = XYXY_ABS
                    for cls, box in annos
                ],
            }
        )
    _write_json_atomic(coco_json_path(name), _to_coco(records))
    _write_json_atomic(index_file, records)  # last: its presence means the split is complete
    return records


def coco_json_path(name: str) -> str:
    """Where the split's COCO json is (written together with the images)."""
    return os.path.join(_split_dir(name, SPLITS[name]), "coco.json")


def load_shapes(name: str) -> List[Dict]:
    """Detectron2 dataset dicts of the named split (generated on first use, then cached).

    Once generated, the split's metadata gets ``json_file`` (its COCO json), so ``COCOEvaluator``
    evaluates against it without converting the dataset.
    """
    if name not in SPLITS:
        raise KeyError(f"Unknown shapes split {name!r}; available: {sorted(SPLITS)}")
    records = _generate(name, SPLITS[name])
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(name)
    if meta.get("json_file", None) is None:
        meta.set(json_file=coco_json_path(name))
    return records


def register_shapes() -> None:
    """Register every split in ``DatasetCatalog``/``MetadataCatalog`` (idempotent)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    for name in SPLITS:
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda name=name: load_shapes(name))
        MetadataCatalog.get(name).set(
            thing_classes=list(CLASS_NAMES),
            thing_colors=list(CLASS_COLORS),
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(CLASS_NAMES))},
            evaluator_type="coco",
        )
