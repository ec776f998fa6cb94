"""Build an assigner from a yacs config: the one place where assigners meet configs (their
constructors and modules know nothing of configs).

``ASSIGNER_BUILDERS`` maps a name (``MODEL.SEMIANCHOR.ASSIGNER.NAME``, ``MODEL.RPN.ASSIGNER_NAME``)
to a function ``cfg -> LabelAssigner``. Every builder is registered here with
:func:`register_assigner_builder`, next to the others, so importing this module gives the whole
table; a project outside the library registers its own rule the same way.
"""

from typing import Callable, Dict

from .atss import ATSSAssigner
from .base import LabelAssigner, StagedAssigner
from .cleanliness import CleanlinessAssigner
from .dla import DLAAssigner
from .max_iou import MaxIoUAssigner
from .padet import PromotedAnchorAssigner
from .sad import SADAssigner

__all__ = ["ASSIGNER_BUILDERS", "register_assigner_builder", "build_assigner", "from_node"]

ASSIGNER_BUILDERS: Dict[str, Callable] = {}


def register_assigner_builder(name: str):
    """Decorator: register ``fn(cfg) -> LabelAssigner`` under ``name`` (a name is taken once)."""

    def deco(fn):
        if name in ASSIGNER_BUILDERS:
            raise KeyError(f"assigner builder {name!r} is already registered")
        ASSIGNER_BUILDERS[name] = fn
        return fn

    return deco


def from_node(assigner_cls, node, **arg_to_key):
    """``assigner_cls(arg=node.KEY, ...)``: one constructor argument per yacs key."""
    return assigner_cls(**{arg: node[key] for arg, key in arg_to_key.items()})


def build_assigner(cfg, name=None) -> LabelAssigner:
    """The assigner named ``name`` (default ``MODEL.SEMIANCHOR.ASSIGNER.NAME``) from ``cfg``: the
    one builder for one-stage detectors and proposal generators alike."""
    name = name or cfg.MODEL.SEMIANCHOR.ASSIGNER.NAME
    if name not in ASSIGNER_BUILDERS:
        raise KeyError(f"unknown assigner name {name!r}; registered: {sorted(ASSIGNER_BUILDERS)}")
    return ASSIGNER_BUILDERS[name](cfg)


@register_assigner_builder("ATSS")
def _atss(cfg):
    return from_node(
        ATSSAssigner, cfg.MODEL.SEMIANCHOR.ASSIGNER, topk="TOPK", center_eps="CENTER_EPS"
    )


@register_assigner_builder("MaxIoU")
def _max_iou(cfg):
    return from_node(
        MaxIoUAssigner,
        cfg.MODEL.SEMIANCHOR.ASSIGNER,
        thresholds="IOU_THRESHOLDS",
        labels="IOU_LABELS",
        allow_low_quality_matches="ALLOW_LOW_QUALITY_MATCHES",
    )


@register_assigner_builder("DLA")
def _dla(cfg):
    a = cfg.MODEL.SEMIANCHOR.ASSIGNER
    return DLAAssigner(topk=a.TOPK, gamma=cfg.MODEL.SEMIANCHOR.DLA.GAMMA, center_eps=a.CENTER_EPS)


@register_assigner_builder("Cleanliness")
def _cleanliness(cfg):
    keys = ("topn", "alpha", "gamma", "soft_labels", "reweight", "eps")
    return from_node(
        CleanlinessAssigner, cfg.MODEL.SEMIANCHOR.NOISY, **{k: k.upper() for k in keys}
    )


@register_assigner_builder("SAD")
def _sad(cfg):
    s = cfg.MODEL.SEMIANCHOR.SAD
    return SADAssigner(
        matcher=build_assigner(cfg, "MaxIoU"),
        location_gamma=s.LOCATION_GAMMA if s.LOCATION_GAMMA >= 0 else None,
        location_rule=s.LOCATION_RULE,
        fcos_size_ranges=s.FCOS_SIZE_RANGES,
        fcos_center_radius=s.FCOS_CENTER_RADIUS,
        regression=s.REGRESSION,
        ac_iou_threshold=s.AC_IOU_THRESHOLD,
        sigma=s.SIGMA,
    )


@register_assigner_builder("PADet")
def _padet(cfg):
    """PADet's two matchings (Sec. 3.1-3.2): max-IoU "initial" on the SSD anchors, then
    "promoted" with the theta rule; both with the (0.3, 0.5) band. APM_R / APM_C off
    (``PROMOTE``, ``THETA`` < 0, ``USE_APM``) turn promotion / the theta rule off."""
    p = cfg.MODEL.SEMIANCHOR.PADET
    theta = p.THETA if p.THETA >= 0 and p.USE_APM else None
    promote = p.PROMOTE and p.USE_APM
    band = dict(thresholds=[0.3, 0.5], labels=[0, -1, 1])
    return StagedAssigner(
        stages=[
            ("initial", MaxIoUAssigner(**band)),
            ("promoted", PromotedAnchorAssigner(**band, promote=promote, theta=theta)),
        ]
    )
