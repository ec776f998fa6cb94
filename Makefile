# semianchor: one idempotent set-up step plus the two README jobs.
#
#   make install   create .venv (Python 3.11), install torch, detectron2 and semianchor (editable,
#                  with its compiled extension). Safe to run again: it only redoes what changed.
#   make quickstart  the main job: train + evaluate ATSS on the shipped BCCD blood-cell dataset
#                  (CPU, ~7 minutes), then draw predictions, the label assignment and the loss curve
#                  under output/quickstart_atss_bccd/report/ and print where everything is.
#   make test      the style check (make lint), then the test suite, with SEMIANCHOR_REQUIRE_EXT=1:
#                  a missing or unloadable compiled extension (semianchor._C) fails the kernel
#                  tests instead of skipping them.
#   make lint      black -l 100, isort, flake8 (pyproject.toml, .flake8) and clang-format (csrc,
#                  .clang-format) in check mode; `make format` applies black, isort, clang-format.
#
# DETECTRON2_SPEC=sal (default) installs upstream detectron2 (commit a59f056) from the PyPI wheel
# `sal-detectron2==0.7.2`; DETECTRON2_SPEC=git installs it from
# git+https://github.com/facebookresearch/detectron2.git (needs internet); any other value is
# passed to pip as-is.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DETECTRON2_SPEC ?= sal
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.2
CUDA_HOME ?= $(if $(wildcard /usr/local/cuda/bin/nvcc),/usr/local/cuda,)
# with a GPU visible, torch builds for that GPU (left empty); without one, the CUDA sources are
# compiled for one architecture (sm_90), enough to check that they build
TORCH_CUDA_ARCH_LIST ?= $(if $(shell nvidia-smi -L 2>/dev/null),,9.0)
export CUDA_HOME TORCH_CUDA_ARCH_LIST

DEPS := fvcore iopath pycocotools "omegaconf>=2.1,<2.4" "hydra-core>=1.1" termcolor yacs tabulate \
	cloudpickle tqdm tensorboard matplotlib "black>=26,<27" packaging "setuptools<81" wheel \
	"numpy<2" "opencv-python-headless<4.12" "Pillow>=7.1" ninja pytest pytest-timeout \
	"flake8>=7,<8" "isort>=9,<10" "clang-format>=18,<24"

EXT_SOURCES := $(shell find semianchor/layers/csrc -type f 2>/dev/null) setup.py

CSRC := $(shell find semianchor/layers/csrc -type f \( -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' \) 2>/dev/null)

.PHONY: install quickstart test lint format clean-ext

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip<25" wheel "setuptools<81"

$(VENV)/.torch: | $(VENV)/bin/python
	$(PIP) install -q $(TORCH_SPEC)
	touch $@

$(VENV)/.detectron2: $(VENV)/.torch
	@set -e; if [ "$(DETECTRON2_SPEC)" = sal ]; then \
	  $(PIP) install -q --no-deps --python-version 3.10 --only-binary=:all: --upgrade \
	    --target "$$($(PY) -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')" \
	    sal-detectron2==0.7.2; \
	  $(PY) tools/retag_detectron2_wheel.py; \
	elif [ "$(DETECTRON2_SPEC)" = git ]; then \
	  $(PIP) install -q --no-build-isolation "git+https://github.com/facebookresearch/detectron2.git"; \
	else \
	  $(PIP) install -q --no-build-isolation "$(DETECTRON2_SPEC)"; \
	fi
	$(PIP) install -q $(DEPS)
	touch $@

$(VENV)/.semianchor: $(VENV)/.detectron2 $(EXT_SOURCES)
	# --use-pep517: setuptools >= 80 otherwise re-runs pip for `develop` in an isolated env without torch
	$(PIP) install -q --no-build-isolation --no-deps --use-pep517 -e .
	$(PIP) check
	touch $@

install: $(VENV)/.semianchor

quickstart: install
	$(PY) tools/lazyconfig_train_net.py --config-file configs/quickstart/atss_R18_bccd.py \
	  --num-gpus 1 train.output_dir=output/quickstart_atss_bccd

lint: install
	$(PY) -m black --check -q .
	$(PY) -m isort --check-only -q .
	$(PY) -m flake8
	$(VENV)/bin/clang-format --dry-run --Werror $(CSRC)

format: install
	$(PY) -m black -q .
	$(PY) -m isort -q .
	$(VENV)/bin/clang-format -i $(CSRC)

test: install lint
	SEMIANCHOR_REQUIRE_EXT=1 $(PY) -m pytest -q tests

clean-ext:
	rm -rf build semianchor/_C*.so $(VENV)/.semianchor
