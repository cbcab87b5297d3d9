"""Backbones for Model Garden that it does not ship; importing this package registers them.

``efficientnet_lite``: EfficientNet-Lite0 (:mod:`tsoda.modeling.backbones.efficientnet_lite`). Its
ImageNet weights are imported once with ``python -m tsoda.backbones import-efficientnet-lite0``
(:mod:`tsoda.modeling.backbones.convert`, the only module that needs PyTorch).
"""

from tsoda.modeling.backbones import efficientnet_lite
from tsoda.modeling.backbones.efficientnet_lite import (
    Backbone,
    EfficientNetLite,
    EfficientNetLiteBackbone,
    build_classifier,
    build_classifier_head,
)

__all__ = [
    "Backbone",
    "EfficientNetLite",
    "EfficientNetLiteBackbone",
    "build_classifier",
    "build_classifier_head",
    "efficientnet_lite",
]
