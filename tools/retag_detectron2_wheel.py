"""Make the cp310 `sal-detectron2` wheel, installed with --target into Python >= 3.11, consistent.

Its compiled `detectron2/_C*.so` targets CPython 3.10 and cannot load here (detectron2 then falls
back to its pure-Python/torchvision ops, e.g. `torchvision.ops.nms`). We delete that .so and mark
the install as the pure-Python distribution it now is (Tag: py3-none-any) so `pip check` is clean.
Idempotent; a no-op for a detectron2 built from source.
"""

import glob
import os
import sys
import sysconfig


def main() -> None:
    purelib = sysconfig.get_paths()["purelib"]
    infos = glob.glob(os.path.join(purelib, "sal_detectron2-*.dist-info"))
    if not infos:
        return
    if sys.version_info[:2] != (3, 10):
        for so in glob.glob(os.path.join(purelib, "detectron2", "_C.cpython-310-*.so")):
            os.remove(so)
    wheel = os.path.join(infos[0], "WHEEL")
    with open(wheel) as f:
        lines = f.read().splitlines()
    lines = ["Tag: py3-none-any" if line.startswith("Tag:") else line for line in lines]
    lines = [
        "Root-Is-Purelib: true" if line.startswith("Root-Is-Purelib:") else line for line in lines
    ]
    with open(wheel, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
