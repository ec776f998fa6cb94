"""Input generators shared by the layer tests."""

import math

import pytest
import torch

from semianchor import extension

STRIDES = (8, 16, 32, 64, 128)  # FPN P3-P7


def grid_anchors(
    image_hw, strides=STRIDES, anchors_per_location=1, offset=0.0, dtype=torch.float32
):
    """Anchors laid out as detectron2's DefaultAnchorGenerator: per level, location-major with
    the A anchors of a location fastest, x before y; cell anchors centred on the location.
    Returns (anchors (R, 4), num_anchors_per_level)."""
    H, W = image_hw
    scales = [2 ** (i / 3) for i in range(3)] if anchors_per_location in (3, 9) else [1.0]
    ratios = (
        [0.5, 1.0, 2.0] if anchors_per_location in (3, 9) and anchors_per_location == 9 else [1.0]
    )
    if anchors_per_location == 3:
        scales, ratios = [1.0], [0.5, 1.0, 2.0]
    out, counts = [], []
    for s in strides:
        h, w = math.ceil(H / s), math.ceil(W / s)
        cells = []
        for size in (8 * s * sc for sc in scales):
            for ar in ratios:
                area = size * size
                cw = math.sqrt(area / ar)
                ch = ar * cw
                cells.append([-cw / 2, -ch / 2, cw / 2, ch / 2])
        cells = torch.tensor(cells, dtype=dtype)[:anchors_per_location]
        assert len(cells) == anchors_per_location
        xs = torch.arange(0, w * s, s, dtype=dtype) + offset * s
        ys = torch.arange(0, h * s, s, dtype=dtype) + offset * s
        sy, sx = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([sx.reshape(-1), sy.reshape(-1)] * 2, dim=1)
        a = (shifts.view(-1, 1, 4) + cells.view(1, -1, 4)).reshape(-1, 4)
        out.append(a)
        counts.append(len(a))
    return torch.cat(out), counts


def random_gts(gen, image_hw, num_gts, kinds="mixed", anchors=None):
    """(M, 4) GT boxes of many kinds: ordinary, zero-area, sub-pixel, partly / wholly outside the
    image, duplicates, centres exactly on anchor centres or midway between two (distance ties)."""
    H, W = image_hw
    boxes = []
    for m in range(num_gts):
        kind = kinds
        if kinds == "mixed":
            kind = [
                "normal",
                "normal",
                "normal",
                "zero",
                "subpixel",
                "outside",
                "far",
                "duplicate",
                "aligned",
                "midway",
            ][int(torch.randint(10, (1,), generator=gen))]
        u = torch.rand(4, generator=gen, dtype=torch.float64)
        cx, cy = (u[0] * 1.2 - 0.1) * W, (u[1] * 1.2 - 0.1) * H
        w, h = float(u[2]) ** 2 * W * 0.8 + 1, float(u[3]) ** 2 * H * 0.8 + 1
        if kind == "zero":
            if u[2] < 0.5:
                w = 0.0
            else:
                h = 0.0
        elif kind == "subpixel":
            w, h = float(u[2]), float(u[3])
        elif kind == "outside":
            cx = -0.3 * W if u[2] < 0.5 else 1.3 * W
        elif kind == "far":
            cx, cy = cx + 1e4 * (1 if u[2] < 0.5 else -1), cy * 10
        elif kind == "duplicate" and boxes:
            boxes.append(list(boxes[int(torch.randint(len(boxes), (1,), generator=gen))]))
            continue
        elif kind in ("aligned", "midway") and anchors is not None:
            stride = STRIDES[int(torch.randint(len(STRIDES), (1,), generator=gen))]
            cx = round(float(cx) / stride) * stride
            cy = round(float(cy) / stride) * stride
            if kind == "midway":
                cx += stride / 2
                cy += stride / 2 if u[3] < 0.5 else 0
            w = h = stride * (1 + 2 * float(u[2]))
        boxes.append([float(cx) - w / 2, float(cy) - h / 2, float(cx) + w / 2, float(cy) + h / 2])
    return torch.tensor(boxes, dtype=torch.float32).view(-1, 4)


def random_batch(gen, image_hw, num_images, max_gts, kinds="mixed", anchors=None):
    """Padded GTs: (N, M, 4) with garbage in the padding, and (N,) counts."""
    counts = torch.randint(0, max_gts + 1, (num_images,), generator=gen)
    M = int(counts.max()) if num_images else 0
    M += int(torch.randint(0, 3, (1,), generator=gen))  # extra padding columns
    gt = torch.full((num_images, M, 4), float("nan"))
    for n in range(num_images):
        k = int(counts[n])
        gt[n, :k] = random_gts(gen, image_hw, k, kinds, anchors)
    return gt, counts


def peak_memory_growth(op, impl):
    """Run ``tests/layers/peak_memory.py`` for ``op`` ("kernel" or "reference" ``impl``) in a fresh
    interpreter; returns its JSON record (``growth``, ``dense`` bytes)."""
    import json
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "tests.layers.peak_memory", op, impl],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def needs_kernel_on(device="cpu"):
    """A pytest mark for tests of the compiled kernel on ``device``.

    Skips when ``semianchor._C`` (or the device) is missing, except under
    ``SEMIANCHOR_REQUIRE_EXT=1`` (``make test``, CI): there a missing or unloadable extension, or
    one without a kernel for a device that is present, fails the test module at collection."""
    if device == "cuda" and not torch.cuda.is_available():
        return pytest.mark.skip(reason="no CUDA device")
    if extension.extension_required():
        extension.load_ops()  # raises, naming the cause, when _C cannot load
        if not extension.has_ops(device):
            raise RuntimeError(
                f"{extension.REQUIRE_ENV} is set but semianchor._C has no {device} kernel "
                "(built without nvcc?)"
            )
        return pytest.mark.skipif(False, reason="")
    return pytest.mark.skipif(
        not extension.has_ops(device), reason=f"semianchor._C has no {device} kernel"
    )


def seed_chunks(total, chunks):
    """``pytest.param`` ranges that split seeds ``0 .. total - 1`` into ``chunks`` equal test cases
    (one per parametrisation, so a failure names its seeds and no single test runs long)."""
    assert total % chunks == 0, "total must be a multiple of chunks"
    size = total // chunks
    ranges = [range(i * size, (i + 1) * size) for i in range(chunks)]
    return [pytest.param(r, id=f"seeds{r.start}-{r.stop - 1}") for r in ranges]
