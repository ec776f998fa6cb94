"""Peak host-memory growth of one operator call, measured in a fresh process.

Run as ``python -m tests.layers.peak_memory OP IMPL``: builds a 2000-GT case (inputs allocated
first), resets the kernel's resident-set high-water mark to the current RSS (``/proc/self/
clear_refs`` = 5), calls the operator once and prints a JSON object with ``growth`` (bytes: peak
RSS during the call, ``VmHWM``, minus RSS before it) and ``dense`` (R x M x 4, the bytes of one
float (R, M) IoU matrix). ``getrusage().ru_maxrss`` alone is not usable: a child started by
``subprocess`` inherits the parent's peak across fork + exec, which masks the call's own.
"""

import json
import sys

import torch

from semianchor import extension
from semianchor.layers import (
    atss_candidate_stats,
    atss_candidate_stats_reference,
    iou_after_regression,
    iou_after_regression_reference,
)

from .helpers import grid_anchors, random_gts

NUM_GTS = 2000
IMAGE = (400, 400)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    # the reset must have worked, or the measured peak would be an older one
    assert _status_bytes("VmHWM") <= _status_bytes("VmRSS") + (1 << 20), "VmHWM not reset"


def main(op: str, impl: str) -> None:
    torch.set_num_threads(1)
    if impl == "kernel" and not extension.has_ops("cpu"):
        raise SystemExit(f"semianchor._C has no CPU kernel: {extension.load_error()!r}")
    gen = torch.Generator().manual_seed(1)
    anchors, levels = grid_anchors(IMAGE, anchors_per_location=9)
    gt = random_gts(gen, IMAGE, NUM_GTS, kinds="normal")[None]
    counts = torch.tensor([NUM_GTS])
    R = anchors.shape[0]
    if op == "iou_after_regression":
        reg = torch.randn(1, R, 4, generator=gen) * 0.1
        fn = iou_after_regression if impl == "kernel" else iou_after_regression_reference
        call = lambda: fn(anchors, reg, gt, counts)  # noqa: E731
    elif op == "atss_candidate_stats":
        fn = atss_candidate_stats if impl == "kernel" else atss_candidate_stats_reference
        call = lambda: fn(anchors, levels, gt, counts, anchors_per_location=9)  # noqa: E731
    else:
        raise SystemExit(f"unknown op {op!r}")
    # warm-up on the same inputs' first GT: the first call pages in library code (file-backed
    # pages count in the RSS too) and sets up the dispatcher; only the second call is measured
    saved = counts.clone()
    counts.fill_(1)
    call()
    counts.copy_(saved)
    _reset_peak()
    before = _status_bytes("VmRSS")
    out = call()
    peak = _status_bytes("VmHWM")
    del out
    print(json.dumps({"growth": peak - before, "dense": R * NUM_GTS * 4, "R": R, "M": NUM_GTS}))


if __name__ == "__main__":
    main(*sys.argv[1:])
