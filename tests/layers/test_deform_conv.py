"""``semianchor.layers.deform_conv2d`` (DCNv1): the grid-sampling implementation, the explicit
reference and torchvision's kernel agree in value and in every gradient (input, offsets, weight,
bias), including offsets that leave the image, zero offsets (every sample on the bilinear kink
at an integer position), odd and 1-pixel sizes, stride, padding and dilation."""

import pytest
import torch
from torchvision.ops import deform_conv2d as torchvision_deform_conv2d

from semianchor.layers import DEFORM_CONV_IMPLS, deform_conv2d, deform_conv2d_reference
from semianchor.modeling.heads.padet_head import FeatureAlignment

# (N, C, O, H, W, offset scale, stride, padding, dilation)
CASES = {
    "random": (2, 5, 4, 9, 11, 2.0, 1, 1, 1),
    "zero_offsets": (2, 4, 3, 8, 8, 0.0, 1, 1, 1),
    "leaving_the_image": (2, 3, 4, 6, 7, 15.0, 1, 1, 1),
    "odd_sizes_stride2_dilation2": (1, 3, 2, 7, 5, 1.5, 2, 2, 2),
    "one_pixel": (3, 2, 2, 1, 1, 1.0, 1, 1, 1),
    "no_padding": (1, 4, 4, 5, 6, 0.7, 1, 0, 1),
}


def make_case(case, dtype, seed=0, integer_offsets=False):
    N, C, O, H, W, scale, stride, padding, dilation = case
    g = torch.Generator().manual_seed(seed)
    Ho = (H + 2 * padding - dilation * 2 - 1) // stride + 1
    Wo = (W + 2 * padding - dilation * 2 - 1) // stride + 1
    x = torch.randn(N, C, H, W, generator=g, dtype=dtype)
    offset = torch.randn(N, 18, Ho, Wo, generator=g, dtype=dtype) * scale
    if integer_offsets:
        offset = offset.round()
    weight = torch.randn(O, C, 3, 3, generator=g, dtype=dtype) / 3
    bias = torch.randn(O, generator=g, dtype=dtype)
    return (x, offset, weight, bias), dict(stride=stride, padding=padding, dilation=dilation)


def value_and_grads(fn, tensors, kwargs, seed=1):
    tensors = [t.detach().clone().requires_grad_() for t in tensors]
    y = fn(*tensors, **kwargs)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    g = g.to(y.device)
    return [y.detach()] + list(torch.autograd.grad(y, tensors, g))


IMPLS = {
    "sampled": lambda *a, **k: deform_conv2d(*a, **k, impl="sampled"),
    "reference": deform_conv2d_reference,
}
NAMES = ("value", "grad input", "grad offset", "grad weight", "grad bias")


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_torchvision_in_value_and_every_gradient(impl, case, dtype):
    tensors, kwargs = make_case(CASES[case], dtype)
    expected = value_and_grads(torchvision_deform_conv2d, tensors, kwargs)
    actual = value_and_grads(IMPLS[impl], tensors, kwargs)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for name, a, e in zip(NAMES, actual, expected):
        torch.testing.assert_close(a, e, rtol=tol, atol=tol, msg=f"{impl} {case}: {name}")


@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_integer_offsets_take_the_gradient_from_above_as_torchvision(impl):
    """Integer offsets put every sample on a kink of the bilinear interpolation: the offset
    gradient there is the one-sided one towards the next pixel (torchvision's); a sample position
    rounded to just below the integer would take the other side and differ by a whole pixel step."""
    tensors, kwargs = make_case((2, 3, 2, 6, 9, 2.0, 1, 1, 1), torch.float32, integer_offsets=True)
    expected = value_and_grads(torchvision_deform_conv2d, tensors, kwargs)
    actual = value_and_grads(IMPLS[impl], tensors, kwargs)
    torch.testing.assert_close(actual[2], expected[2], rtol=1e-5, atol=1e-5)


def test_zero_offsets_are_a_plain_convolution():
    tensors, kwargs = make_case(CASES["zero_offsets"], torch.float64)
    x, offset, weight, bias = tensors
    expected = torch.nn.functional.conv2d(x, weight, bias, padding=1)
    torch.testing.assert_close(deform_conv2d(x, offset, weight, bias, padding=1), expected)


def test_a_shift_by_one_pixel_reads_the_neighbour():
    """Every tap displaced by (dy, dx) = (0, 1): the output is the plain convolution of the image
    shifted one pixel left (zeros entering at the right)."""
    x = torch.arange(20.0).view(1, 1, 4, 5)
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 1, 1] = 1.0  # the centre tap only: y(p) = x(p + offset)
    offset = torch.zeros(1, 18, 4, 5)
    offset[:, 1::2] = 1.0  # dx of every tap
    y = deform_conv2d(x, offset, weight, padding=1)
    expected = torch.cat([x[..., 1:], torch.zeros(1, 1, 4, 1)], dim=-1)
    torch.testing.assert_close(y, expected)
    offset[:, 1::2] = 0.5  # half way: the mean of the two neighbours
    y = deform_conv2d(x, offset, weight, padding=1)
    torch.testing.assert_close(y, (x + expected) / 2)


def test_gradcheck():
    tensors, kwargs = make_case((1, 2, 2, 4, 5, 1.3, 1, 1, 1), torch.float64)
    tensors = [t.requires_grad_() for t in tensors]
    for fn in IMPLS.values():
        assert torch.autograd.gradcheck(lambda *t: fn(*t, **kwargs), tensors, fast_mode=True)


def test_opcheck():
    (x, offset, weight, bias), _ = make_case((1, 2, 2, 3, 4, 1.0, 1, 1, 1), torch.float32)
    weight.requires_grad_()
    for b in (bias, None):
        torch.library.opcheck(
            torch.ops.semianchor.deform_conv2d.default,
            (x, offset, weight, b, [1, 1], [1, 1], [1, 1]),
        )


def test_auto_is_the_sampled_implementation_on_cpu(monkeypatch):
    import torchvision.ops

    def fail(*args, **kwargs):
        raise AssertionError("torchvision's deform_conv2d called on CPU under impl='auto'")

    monkeypatch.setattr(torchvision.ops, "deform_conv2d", fail)
    tensors, kwargs = make_case(CASES["random"], torch.float32)
    auto = deform_conv2d(*tensors, **kwargs)
    assert torch.equal(auto, deform_conv2d(*tensors, **kwargs, impl="sampled"))
    with pytest.raises(AssertionError, match="called on CPU"):
        deform_conv2d(*tensors, **kwargs, impl="torchvision")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: dict(t, offset=t["offset"][:, :16]), "offset must be"),
        (lambda t: dict(t, weight=t["weight"][:, :2]), "input channels"),
        (lambda t: dict(t, bias=t["bias"][:2]), "bias must be"),
        (lambda t: dict(t, offset=t["offset"].double()), "share dtype"),
        (lambda t: dict(t, input=t["input"][0]), "must be 4-D"),
        (lambda t: dict(t, impl="cuda"), "impl must be one of"),
        (lambda t: dict(t, stride=0), "stride"),
    ],
)
def test_bad_input_is_named(change, message):
    (x, offset, weight, bias), kwargs = make_case(CASES["random"], torch.float32)
    args = change(dict(input=x, offset=offset, weight=weight, bias=bias, **kwargs))
    with pytest.raises(ValueError, match=message):
        deform_conv2d(**args)


@pytest.mark.parametrize("mode", ["implicit", "disentangled"])
def test_fam_implementations_agree(mode):
    """The PADet feature alignment gives the same features and gradients with either kernel."""
    torch.manual_seed(0)
    fams = {
        impl: FeatureAlignment(6, 2, mode=mode, impl=impl) for impl in ("sampled", "torchvision")
    }
    for p in fams["sampled"].parameters():  # non-zero offset branches: real deformations
        torch.nn.init.normal_(p, std=0.3)
    fams["torchvision"].load_state_dict(fams["sampled"].state_dict())
    x = torch.randn(2, 6, 7, 9)
    apm_reg = torch.randn(2, 8, 7, 9)
    out = {}
    for impl, fam in fams.items():
        y = fam(x, apm_reg)
        grads = torch.autograd.grad(y.square().sum(), list(fam.parameters()))
        out[impl] = [y] + list(grads)
    for a, b in zip(out["sampled"], out["torchvision"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert out["sampled"][0].abs().sum() > 0


def test_fam_impl_is_checked():
    assert DEFORM_CONV_IMPLS == ("auto", "sampled", "torchvision")
    with pytest.raises(ValueError, match="FAM impl must be one of"):
        FeatureAlignment(4, 2, impl="fast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_sampled_equals_torchvision(case):
    tensors, kwargs = make_case(CASES[case], torch.float32)
    tensors = [t.cuda() for t in tensors]
    expected = value_and_grads(torchvision_deform_conv2d, tensors, kwargs)
    actual = value_and_grads(IMPLS["sampled"], tensors, kwargs)
    for name, a, e in zip(NAMES, actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5, msg=f"{case}: {name}")
