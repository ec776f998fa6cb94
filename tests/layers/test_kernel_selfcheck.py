"""The first-use self-check of the compiled kernels and the ``SEMIANCHOR_KERNELS`` switch.

The check is device-agnostic: here it runs on CPU, against the real CPU kernels (which must pass:
the fixed input and the comparison are right) and against deliberately wrong kernels (which must
be caught, with the op, the output, the difference and the switch named). The wiring through the
op wrappers is tested by letting the check cover CPU and handing it a wrong kernel."""

import pytest
import torch

from semianchor import extension
from semianchor.layers import _selfcheck, max_iou_match, soft_nms, soft_nms_reference

OPS = sorted(_selfcheck.CHECKS)

pytestmark = pytest.mark.skipif(
    not extension.has_ops("cpu"), reason="semianchor._C has no CPU kernels (not built)"
)


def wrong(op, how):
    """``torch.ops.semianchor.<op>`` with one output value changed: ``how`` = "float" adds
    2e-5 to one element of the first float output, "index" adds 1 to one element of the first
    integer output."""
    real = getattr(torch.ops.semianchor, op)

    def kernel(*args):
        out = [t.clone() for t in real(*args)]
        for t in out:
            if t.is_floating_point() == (how == "float") and t.numel():
                t.view(-1)[t.numel() // 2] += 2e-5 if how == "float" else 1
                break
        return tuple(out)

    return kernel


@pytest.mark.parametrize("op", OPS)
def test_every_compiled_cpu_kernel_passes_the_check(op):
    _selfcheck.check_kernel(op, "cpu")


@pytest.mark.parametrize("how", ["float", "index"])
@pytest.mark.parametrize("op", OPS)
def test_a_wrong_kernel_is_caught_with_the_op_and_the_switch_named(op, how):
    names = _selfcheck.CHECKS[op][1]
    with pytest.raises(_selfcheck.KernelSelfCheckError) as info:
        _selfcheck.check_kernel(op, "cpu", wrong(op, how))
    message = str(info.value)
    assert f"torch.ops.semianchor.{op}" in message and "SEMIANCHOR_KERNELS=reference" in message
    assert any(f"{name}: " in message for name in names), message
    if how == "float":
        assert "max |difference| 2e-05" in message
    else:
        assert "1 of " in message and " values differ" in message


@pytest.fixture
def check_cpu(monkeypatch):
    """The self-check covers CPU for this test, with a fresh record of checked ops."""
    monkeypatch.setattr(_selfcheck, "CHECKED_DEVICE_TYPES", ("cpu",))
    monkeypatch.setattr(_selfcheck, "_checked", set())
    monkeypatch.delenv(_selfcheck.KERNELS_ENV, raising=False)
    monkeypatch.delenv(_selfcheck.SELFCHECK_ENV, raising=False)


def nms_inputs():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20, 30, 30]])
    return boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1])


def test_the_wrappers_check_once_per_process_and_device(check_cpu, monkeypatch):
    calls = []

    def kernel_for(op):
        calls.append(op)
        return getattr(torch.ops.semianchor, op)

    monkeypatch.setattr(_selfcheck, "_kernel_for", kernel_for)
    soft_nms(*nms_inputs())
    soft_nms(*nms_inputs())
    assert calls == ["soft_nms"]


def test_a_wrong_kernel_fails_the_first_call_of_the_wrapper(check_cpu, monkeypatch):
    monkeypatch.setattr(_selfcheck, "_kernel_for", lambda op: wrong(op, "index"))
    with pytest.raises(_selfcheck.KernelSelfCheckError, match="semianchor.max_iou_match"):
        max_iou_match(torch.tensor([[0.0, 0, 8, 8]]), torch.zeros(1, 0, 4), torch.tensor([0]))
    with pytest.raises(_selfcheck.KernelSelfCheckError):  # and every later call
        max_iou_match(torch.tensor([[0.0, 0, 8, 8]]), torch.zeros(1, 0, 4), torch.tensor([0]))


def test_selfcheck_switch_off_skips_the_check(check_cpu, monkeypatch):
    monkeypatch.setattr(_selfcheck, "_kernel_for", lambda op: wrong(op, "index"))
    monkeypatch.setenv(_selfcheck.SELFCHECK_ENV, "0")
    keep, scores = soft_nms(*nms_inputs())
    assert keep.tolist() == [0, 2, 1]


def test_kernels_reference_switch_uses_the_references(monkeypatch):
    """With SEMIANCHOR_KERNELS=reference the compiled op is never called."""
    monkeypatch.setenv(_selfcheck.KERNELS_ENV, "reference")

    def poisoned(*args):
        raise AssertionError("the compiled kernel ran")

    monkeypatch.setattr(torch.ops.semianchor, "soft_nms", poisoned, raising=False)
    keep, scores = soft_nms(*nms_inputs())
    ref_keep, ref_scores = soft_nms_reference(*nms_inputs())
    assert torch.equal(keep, ref_keep) and torch.equal(scores, ref_scores)


@pytest.mark.parametrize(
    "env, value", [(_selfcheck.KERNELS_ENV, "fast"), (_selfcheck.SELFCHECK_ENV, "maybe")]
)
def test_bad_switch_values_are_errors(monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValueError, match=env):
        soft_nms(*nms_inputs())


@pytest.mark.skipif(
    not torch.cuda.is_available() or not extension.has_ops("cuda"),
    reason="needs a CUDA device and the CUDA kernels",
)
@pytest.mark.parametrize("op", OPS)
def test_every_cuda_kernel_passes_the_check(op):
    _selfcheck.check_kernel(op, "cuda")
