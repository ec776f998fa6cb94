"""PADet's head (Tang et al. 2019, Sec. 3.2-3.3; choices P4, P5 in projects/PADet/DESIGN.md):
per decoded level, the anchor promotion module (APM: a positive logit and 4 coarse deltas per
anchor) and the detection head (CBR3-256, the feature alignment module, then sibling
softmax-classification and regression convs). Levels differ in A_l (6 and 4), so every
predictor is per level (SSD-style, unshared).

Feature alignment (FAM): a 3x3 deformable conv (:func:`semianchor.layers.deform_conv2d`, DCNv1 with
torchvision's offset layout: per tap k = 3i + j, channel 2k = dy, 2k + 1 = dx, in feature pixels;
``fam_impl`` picks its implementation: "auto" is the multi-threaded grid-sampling formulation on
CPU and torchvision's kernel on CUDA, "sampled" / "torchvision" force one) whose offsets
come from the APM regression of the location's A anchors (detached by default, P5):
X_l = the (dx, dy) deltas (2A channels), X_s = the (dw, dh) deltas (2A channels), and (Table 1)

    none          plain 3x3 conv (no alignment)
    implicit      offsets = conv3x3(features) (standard DCN)
    location      offsets = F(X_l) broadcast to the 9 taps (c, 2 channels)
    shape         offsets = G(X_s) (18 channels)
    concat        offsets = H([X_l; X_s]) (18 channels)
    disentangled  offsets = F(X_l) broadcast + G(X_s) (the paper's (c), default)

F, G, H are 1x1 convs, zero-initialised so every FAM starts as the plain conv (inferred, P4:
the paper's Fig. 3, which would define them, is missing from the available copy).
FAM is applied on the first ``fam_levels`` levels only ("not to the last 2 layers").

Table 2's rows drop APM branches: ``apm_scoring=False`` removes the anchor scoring branch
(``apm_cls``; APM_R and the baseline), ``apm_adjustment=False`` the anchor adjustment branch
(``apm_reg``; APM_C and the baseline), so no parameter goes untrained. Without the adjustment
branch there is no X_l / X_s: only the FAM modes "none" and "implicit" remain.
"""

import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from detectron2.utils.events import get_event_storage

from ...layers.deform_conv import DEFORM_CONV_IMPLS, deform_conv2d
from .dense_head import HeadOutput

__all__ = ["FeatureAlignment", "PADetHead", "FAM_MODES", "FAM_MODES_WITHOUT_APM"]

FAM_MODES = ("none", "implicit", "location", "shape", "concat", "disentangled")
FAM_MODES_WITHOUT_APM = ("none", "implicit")  # the modes that do not read the APM deltas


def _conv(in_channels, out_channels, kernel_size, std=0.01, bias=0.0):
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    nn.init.normal_(conv.weight, std=std)
    nn.init.constant_(conv.bias, bias)
    return conv


def _zero_conv(in_channels, out_channels, kernel_size=1):
    """A zero-initialised conv that draws no random numbers: ``nn.Conv2d`` initialises itself
    randomly before we zero it, and those draws would shift the random initialisation of every
    layer built after it. With them, a FAM model and its no-FAM twin built from one seed differed
    in every later head layer, so the Table 1/2 arms compared two initial draws as much as two
    modules (on BCCD at 150 iterations that draw alone moved AP by 11.6). Without them, the arms
    start from the same weights and, the offsets being zero, the same function."""
    with torch.random.fork_rng(devices=[]):
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class FeatureAlignment(nn.Module):
    """The FAM of one level: a 3x3 (deformable) conv ``channels -> channels`` + ReLU whose offsets
    follow ``mode`` (module docstring). ``forward(x, apm_reg)``: x (N, C, H, W), apm_reg
    (N, 4A, H, W) deltas (dx, dy, dw, dh per anchor); None for the modes that do not read it.
    ``impl``: the deformable conv's implementation (``semianchor.layers.deform_conv2d``).

    ``offset_grad_mul`` scales the gradient that reaches the offset branch (F, G, H or the
    implicit offset conv) without changing the offsets' values: 1 trains it as the rest of the
    head, 0.1 is the usual learning-rate multiplier of deformable-conv offsets, 0 freezes it at its
    zero initialisation (the FAM is then a plain 3x3 conv with the same parameters and the same
    random initialisation of every other layer as the FAM model: the control arm that separates the
    alignment from the initialisation).

    Training statistics: when ``stats_name`` is set (the head names its levels ``fam0``, ``fam1``,
    ...) and an ``EventStorage`` is active, every training step logs ``padet/<name>_offset_abs``
    (mean |offset|, feature pixels), ``padet/<name>_offset_max`` (max |offset|) and
    ``padet/<name>_offset_grad`` (RMS of the loss gradient reaching the offsets)."""

    def __init__(
        self,
        channels: int,
        num_anchors: int,
        mode: str = "disentangled",
        grad_mul: float = 0.0,
        impl: str = "auto",
        offset_grad_mul: float = 1.0,
    ):
        super().__init__()
        if mode not in FAM_MODES:
            raise ValueError(f"FAM mode must be one of {FAM_MODES}, got {mode!r}")
        if impl not in DEFORM_CONV_IMPLS:
            raise ValueError(f"FAM impl must be one of {DEFORM_CONV_IMPLS}, got {impl!r}")
        self.impl = impl
        if not 0.0 <= grad_mul <= 1.0:
            raise ValueError(f"FAM grad_mul must be in [0, 1], got {grad_mul}")
        self.mode, self.grad_mul, self.num_anchors = mode, float(grad_mul), num_anchors
        if not 0.0 <= offset_grad_mul <= 1.0:
            raise ValueError(f"FAM offset_grad_mul must be in [0, 1], got {offset_grad_mul}")
        self.offset_grad_mul = float(offset_grad_mul)
        self.stats_name: Optional[str] = None
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        A = num_anchors
        if mode == "implicit":
            self.offset_conv = _zero_conv(channels, 18, kernel_size=3)  # a standard DCN's
        if mode in ("location", "disentangled"):
            self.f_loc = _zero_conv(2 * A, 2)
        if mode in ("shape", "disentangled"):
            self.g_shape = _zero_conv(2 * A, 18)
        if mode == "concat":
            self.h_both = _zero_conv(4 * A, 18)

    def offsets(self, x: torch.Tensor, apm_reg: torch.Tensor) -> torch.Tensor:
        """(N, 18, H, W) offsets, (dy, dx) per tap; zeros for ``mode="none"``."""
        N, _, H, W = x.shape
        if self.mode == "none":
            return x.new_zeros((N, 18, H, W))
        if self.mode == "implicit":
            return self.offset_conv(x)
        if apm_reg is None:
            raise ValueError(f"FAM mode {self.mode!r} needs the APM deltas (apm_reg)")
        # gradient into the APM: 0 (detach, Guided Anchoring), 0.1 (RepPoints) or 1 (TDRN)
        reg = apm_reg * self.grad_mul + apm_reg.detach() * (1.0 - self.grad_mul)
        reg = reg.view(N, self.num_anchors, 4, H, W)
        x_l = reg[:, :, :2].reshape(N, 2 * self.num_anchors, H, W)
        x_s = reg[:, :, 2:].reshape(N, 2 * self.num_anchors, H, W)
        if self.mode == "concat":
            return self.h_both(torch.cat([x_l, x_s], dim=1))
        out = 0
        if self.mode in ("location", "disentangled"):
            out = out + self.f_loc(x_l).repeat(1, 9, 1, 1)  # c: the same (dy, dx) for all 9 taps
        if self.mode in ("shape", "disentangled"):
            out = out + self.g_shape(x_s)
        return out

    def forward(self, x: torch.Tensor, apm_reg: Optional[torch.Tensor]) -> torch.Tensor:
        if self.mode == "none":
            y = nn.functional.conv2d(x, self.weight, self.bias, padding=1)
        else:
            offset = self.offsets(x, apm_reg)
            if self.offset_grad_mul == 0.0:
                offset = offset.detach()
            elif self.offset_grad_mul != 1.0:
                m = self.offset_grad_mul
                offset = offset * m + offset.detach() * (1.0 - m)
            if self.training and self.stats_name is not None:
                self._log_offset_stats(offset)
            # in fp32 under autocast (torchvision's CPU kernel has no bf16/fp16 version, and the
            # sample positions want the precision)
            with torch.autocast(x.device.type, enabled=False):
                dtype = torch.promote_types(x.dtype, torch.float32)
                y = deform_conv2d(
                    x.to(dtype),
                    offset.to(dtype),
                    self.weight.to(dtype),
                    self.bias.to(dtype),
                    padding=(1, 1),
                    impl=self.impl,
                )
        return torch.relu(y)

    def _log_offset_stats(self, offset: torch.Tensor) -> None:
        storage = _current_storage()
        if storage is None:
            return
        name = f"padet/{self.stats_name}"
        magnitude = offset.detach().abs()
        storage.put_scalar(f"{name}_offset_abs", float(magnitude.mean()))
        storage.put_scalar(f"{name}_offset_max", float(magnitude.max()))
        if offset.requires_grad:

            def log_grad(grad: torch.Tensor) -> None:
                storage.put_scalar(f"{name}_offset_grad", float(grad.float().pow(2).mean().sqrt()))

            offset.register_hook(log_grad)


def _current_storage():
    """Detectron2's active EventStorage, or None (a forward pass outside a trainer)."""
    try:
        return get_event_storage()
    except AssertionError:
        return None


class PADetHead(nn.Module):
    """APM + detection head per level (module docstring).

    Outputs per level (A_l anchors per location): ``apm_cls`` (N, A_l, H, W) positive logits
    (with ``apm_scoring``), ``apm_reg`` (N, 4A_l, H, W) deltas w.r.t. the initial anchors (with
    ``apm_adjustment``), ``cls`` (N, A_l (K + 1), H, W) softmax logits (background last), ``reg``
    (N, 4A_l, H, W) deltas w.r.t. the promoted anchors (the initial ones without adjustment).

    Args:
        input_shape: the decoded levels' ShapeSpecs (equal channels C).
        num_classes: K. num_anchors: A_l per level.
        fam_mode: one of ``FAM_MODES``; fam_levels: how many of the first levels get a FAM (the
            others a plain 3x3 conv); fam_grad_mul: gradient scale from the FAM into the APM;
            fam_impl: the deformable conv's implementation ("auto", "sampled", "torchvision");
            fam_offset_grad_mul: gradient scale on the FAM's offset branch (``FeatureAlignment``;
            0 freezes the offsets at zero).
        prior_prob: initial positive probability of the APM logits (SSD/RefineDet: none; we use
            the focal prior only for the APM's sigmoid so training starts stable).
        apm_scoring / apm_adjustment: build the APM's anchor scoring (APM_C) / anchor adjustment
            (APM_R) branch (Table 2; both off: the baseline, "vanilla DSSD").
    """

    def __init__(
        self,
        *,
        input_shape,
        num_classes: int,
        num_anchors: Sequence[int],
        fam_mode: str = "disentangled",
        fam_levels: int = 4,
        fam_grad_mul: float = 0.0,
        fam_impl: str = "auto",
        fam_offset_grad_mul: float = 1.0,
        prior_prob: float = 0.01,
        apm_scoring: bool = True,
        apm_adjustment: bool = True,
    ):
        super().__init__()
        if len({s.channels for s in input_shape}) != 1:
            raise ValueError(
                f"all head input levels must have the same channels, got {input_shape}"
            )
        if len(num_anchors) != len(input_shape):
            raise ValueError(
                f"num_anchors {list(num_anchors)} must have one entry per level "
                f"({len(input_shape)})"
            )
        if not apm_adjustment and fam_mode not in FAM_MODES_WITHOUT_APM:
            raise ValueError(
                f"FAM mode {fam_mode!r} takes its offsets from the APM's anchor adjustment branch: "
                f"with apm_adjustment=False use one of {FAM_MODES_WITHOUT_APM}"
            )
        C = input_shape[0].channels
        self.num_classes, self.num_anchors = num_classes, list(num_anchors)
        self.apm_scoring, self.apm_adjustment = bool(apm_scoring), bool(apm_adjustment)
        bias = -math.log((1 - prior_prob) / prior_prob)
        if self.apm_scoring:
            self.apm_cls = nn.ModuleList(_conv(C, a, 3, bias=bias) for a in num_anchors)
        if self.apm_adjustment:
            self.apm_reg = nn.ModuleList(_conv(C, 4 * a, 3) for a in num_anchors)
        self.det_conv = nn.ModuleList(
            nn.Sequential(nn.Conv2d(C, C, 3, padding=1, bias=False), nn.BatchNorm2d(C), nn.ReLU())
            for _ in num_anchors
        )
        self.fam = nn.ModuleList(
            FeatureAlignment(
                C,
                a,
                fam_mode if level < fam_levels else "none",
                fam_grad_mul,
                fam_impl,
                offset_grad_mul=fam_offset_grad_mul,
            )
            for level, a in enumerate(num_anchors)
        )
        for level, fam in enumerate(self.fam):
            fam.stats_name = f"fam{level}"
        self.cls_pred = nn.ModuleList(_conv(C, a * (num_classes + 1), 3) for a in num_anchors)
        self.reg_pred = nn.ModuleList(_conv(C, 4 * a, 3) for a in num_anchors)

    @property
    def outputs(self) -> Dict[str, HeadOutput]:
        outputs = {"cls": HeadOutput(self.num_classes + 1), "reg": HeadOutput(4)}
        if self.apm_scoring:
            outputs["apm_cls"] = HeadOutput(1)
        if self.apm_adjustment:
            outputs["apm_reg"] = HeadOutput(4)
        return outputs

    def forward(self, features: List[torch.Tensor]) -> Dict[str, List[torch.Tensor]]:
        out = {k: [] for k in self.outputs}
        for level, x in enumerate(features):
            apm_reg = self.apm_reg[level](x) if self.apm_adjustment else None
            aligned = self.fam[level](self.det_conv[level](x), apm_reg)
            if self.apm_scoring:
                out["apm_cls"].append(self.apm_cls[level](x))
            if self.apm_adjustment:
                out["apm_reg"].append(apm_reg)
            out["cls"].append(self.cls_pred[level](aligned))
            out["reg"].append(self.reg_pred[level](aligned))
        return out
