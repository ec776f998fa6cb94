"""Build an assigner from a yacs config (assigner constructors themselves know nothing of configs).

``ASSIGNER_BUILDERS`` maps ``MODEL.SEMIANCHOR.ASSIGNER.NAME`` to a function
``cfg -> LabelAssigner``; methods add theirs with :func:`register_assigner_builder`.
"""

from typing import Callable, Dict

from .atss import ATSSAssigner
from .max_iou import MaxIoUAssigner

__all__ = ["ASSIGNER_BUILDERS", "register_assigner_builder", "build_assigner", "from_node"]

ASSIGNER_BUILDERS: Dict[str, Callable] = {}


def register_assigner_builder(name: str):
    def deco(fn):
        if name in ASSIGNER_BUILDERS:
            raise KeyError(f"assigner builder {name!r} is already registered")
        ASSIGNER_BUILDERS[name] = fn
        return fn

    return deco


def from_node(assigner_cls, node, **arg_to_key):
    """``assigner_cls(arg=node.KEY, ...)``: one constructor argument per yacs key."""
    return assigner_cls(**{arg: node[key] for arg, key in arg_to_key.items()})


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


def build_assigner(cfg, name=None):
    """The assigner named ``name`` (default ``MODEL.SEMIANCHOR.ASSIGNER.NAME``) from ``cfg``: the
    one builder for one-stage detectors and proposal generators alike."""
    name = name or cfg.MODEL.SEMIANCHOR.ASSIGNER.NAME
    if name not in ASSIGNER_BUILDERS:
        raise KeyError(f"unknown assigner name {name!r}; registered: {sorted(ASSIGNER_BUILDERS)}")
    return ASSIGNER_BUILDERS[name](cfg)
