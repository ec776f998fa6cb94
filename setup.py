#!/usr/bin/env python
"""Build semianchor and its compiled extension ``semianchor._C``.

The extension always contains the C++ (CPU) kernels. CUDA sources are added when ``nvcc`` is found
(``CUDA_HOME``) or when ``FORCE_CUDA=1``; ``FORCE_CUDA=0`` disables them. With no GPU visible,
``TORCH_CUDA_ARCH_LIST`` defaults to "7.0;8.0;9.0" so the build does not depend on the build host.
Build in the environment that already holds torch: ``pip install --no-build-isolation -e .``.
"""

import glob
import os
import shutil

from setuptools import find_packages, setup


def _default_cuda_home():
    # /usr/local/bin/nvcc may be a wrapper script; torch would then guess CUDA_HOME=/usr/local and
    # fail to link cudart. Prefer the real toolkit directory when it exists.
    if "CUDA_HOME" in os.environ or "CUDA_PATH" in os.environ:
        return
    for candidate in ("/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)):
        if os.path.exists(os.path.join(candidate, "bin", "nvcc")):
            os.environ["CUDA_HOME"] = candidate
            return


_default_cuda_home()

import torch  # noqa: E402  (CUDA_HOME must be set before cpp_extension reads it)
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

CSRC = os.path.join("semianchor", "layers", "csrc")


def _use_cuda():
    force = os.environ.get("FORCE_CUDA")
    if force is not None:
        return force == "1"
    return CUDA_HOME is not None and (
        shutil.which("nvcc") is not None or os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    )


def get_extensions():
    sources = sorted(glob.glob(os.path.join(CSRC, "**", "*.cpp"), recursive=True))
    cuda_sources = sorted(glob.glob(os.path.join(CSRC, "**", "*.cu"), recursive=True))
    # -ffp-contract=off: no FMA contraction, so the CPU kernels match the PyTorch references
    # bit-for-bit; -fno-trapping-math lets GCC vectorise branch-free float selects (values are
    # unchanged).
    extra_compile_args = {"cxx": ["-O3", "-std=c++20", "-ffp-contract=off", "-fno-trapping-math"]}
    define_macros = []
    extension = CppExtension
    if _use_cuda():
        if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            os.environ["TORCH_CUDA_ARCH_LIST"] = "7.0;8.0;9.0"
        extension = CUDAExtension
        sources += cuda_sources
        define_macros.append(("WITH_CUDA", None))
        extra_compile_args["nvcc"] = ["-O3", "-std=c++20", "--expt-relaxed-constexpr"]
    return [
        extension(
            "semianchor._C",
            sources,
            include_dirs=[os.path.abspath(CSRC)],
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
        )
    ]


def model_zoo_configs():
    """``configs/`` ships inside the package as ``semianchor/configs`` (what
    ``semianchor.model_zoo`` reads from an installed wheel): a link to the checkout's folder made
    at build time (a copy where links are not allowed), then every .py / .yaml under it as package
    data."""
    here = os.path.dirname(os.path.realpath(__file__))
    source, destination = os.path.join(here, "configs"), os.path.join(here, "semianchor", "configs")
    if os.path.isdir(source):
        if os.path.islink(destination):
            os.unlink(destination)
        elif os.path.isdir(destination):
            shutil.rmtree(destination)
        try:
            os.symlink(os.path.join("..", "configs"), destination)
        except OSError:
            shutil.copytree(source, destination)
    return [
        os.path.relpath(path, os.path.join(here, "semianchor"))
        for ext in ("py", "yaml")
        for path in glob.glob(os.path.join(destination, "**", f"*.{ext}"), recursive=True)
    ]


setup(
    name="semianchor",
    version="0.1.0",
    description="Detectron2 library of one-stage detectors that differ by label assignment",
    packages=find_packages(exclude=("tests", "tests.*", "configs", "tools", "benchmarks")),
    # the builtin dataset (BCCD: jsons, images, licence, provenance) ships inside the package
    package_data={
        "semianchor.data": ["builtin/*/*.*", "builtin/*/LICENSE", "builtin/*/*/*"],
        "semianchor": model_zoo_configs(),
    },
    python_requires=">=3.10",
    install_requires=["torch>=2.11", "torchvision", "fvcore", "pycocotools"],
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
