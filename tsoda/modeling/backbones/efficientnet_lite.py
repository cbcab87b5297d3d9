"""EfficientNet-Lite0 backbone (tf_keras) for TF Model Garden, plus its ImageNet classifier head.

EfficientNet-Lite (Tan & Le, EfficientNet, 2019; the "Lite" variants of the TensorFlow TPU
reference, 2020) is EfficientNet-B0's MBConv network made friendly to integer accelerators:
no squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 filters) and head (1280
filters) that are not scaled. Lite0 has 7 stages (kernel, repeats, in -> out, expansion, stride):

    3x3 1x 32->16 e1 s1 | 3x3 2x 16->24 e6 s2 | 5x5 2x 24->40 e6 s2 | 3x3 3x 40->80 e6 s2
    5x5 3x 80->112 e6 s1 | 5x5 4x 112->192 e6 s2 | 3x3 1x 192->320 e6 s1

after a 3x3 stride-2 stem conv. Convolutions use TensorFlow ``'same'`` padding (the extra pixel
of an odd padding goes bottom/right, as in the reference). Batch norms follow every conv.

The backbone returns ``{level_str: [B, H / 2**level, W / 2**level, C]}`` for levels 2-5
(24, 40, 112 and 320 channels: the last block of each stride) and has ``output_specs``, as
Model Garden's RetinaNet decoders expect. The 1x1 head conv (1280) is not part of the
backbone: it belongs to the classifier (:func:`build_classifier_head`), which is only needed
to check the imported ImageNet weights.

Input normalization. Model Garden's RetinaNet parser (and the exported serving model) feed
images normalized with ImageNet statistics, ``x = (pixel - MEAN_RGB) / STDDEV_RGB``
(``official.vision.ops.preprocess_ops``, pixels in [0, 255]). The EfficientNet-Lite ImageNet
weights were trained with inception-style normalization, ``(pixel - 127) / 128`` (the TF
reference's ``efficientnet_lite_builder.MEAN_RGB = 127, STDDEV_RGB = 128``, chosen for
post-training quantization); the PyTorch port keeps those weights. So with
``input_normalization='imagenet'`` (the default) the first layer, :class:`InputRescaling`, is
the fixed per-channel affine map ``x * STDDEV_RGB / 128 + (MEAN_RGB - 127) / 128``, which
turns Model Garden's input back into what the weights expect, exactly (zero padding added
after normalization still means the mean colour). ``input_normalization='lite'`` makes it the
identity for inputs that are already ``(pixel - 127) / 128``. The layer has no weights, so
checkpoints do not depend on this choice.

Registered with Model Garden's backbone factory under ``'efficientnet_lite'`` (see
:func:`register`); a RetinaNet config selects it with a :class:`Backbone` whose
``type='efficientnet_lite'``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, NamedTuple

import tensorflow as tf
import tf_keras
from official.modeling import hyperparams
from official.vision.configs import backbones as mg_backbones
from official.vision.modeling.backbones import factory as backbone_factory
from official.vision.modeling.layers import nn_layers
from official.vision.ops import preprocess_ops

from tsoda.modeling.registry import register_once

logger = logging.getLogger(__name__)

BACKBONE_KEY = "efficientnet_lite"
LITE_MEAN_RGB = 127.0
LITE_STDDEV_RGB = 128.0
INPUT_NORMALIZATIONS = ("imagenet", "lite")
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_IMAGENET_CLASSES = 1000


class Stage(NamedTuple):
    """One stage of MBConv blocks; only the first block has ``stride`` and ``input_filters``."""

    kernel_size: int
    repeats: int
    input_filters: int
    output_filters: int
    expand_ratio: int
    stride: int


STAGES = {
    "lite0": (
        Stage(3, 1, 32, 16, 1, 1),
        Stage(3, 2, 16, 24, 6, 2),
        Stage(5, 2, 24, 40, 6, 2),
        Stage(3, 3, 40, 80, 6, 2),
        Stage(5, 3, 80, 112, 6, 1),
        Stage(5, 4, 112, 192, 6, 2),
        Stage(3, 1, 192, 320, 6, 1),
    ),
}
DROPOUT_RATES = {"lite0": 0.2}  # before the classifier's dense layer


@dataclasses.dataclass
class EfficientNetLite(hyperparams.Config):
    """EfficientNet-Lite backbone config.

    Attributes:
        model_id: Network size; only ``'lite0'`` is defined.
        stochastic_depth_drop_rate: Drop rate of the last residual block; block ``i`` of ``n``
            drops with ``rate * i / n`` during training (0 disables).
        input_normalization: ``'imagenet'`` if inputs are Model Garden's ImageNet-normalized
            images (converted inside), ``'lite'`` if already ``(pixel - 127) / 128``.
    """

    model_id: str = "lite0"
    stochastic_depth_drop_rate: float = 0.0
    input_normalization: str = "imagenet"


@dataclasses.dataclass
class Backbone(mg_backbones.Backbone):
    """Model Garden's backbone oneof with an ``efficientnet_lite`` member added."""

    efficientnet_lite: EfficientNetLite = dataclasses.field(default_factory=EfficientNetLite)


class InputRescaling(tf_keras.layers.Layer):
    """Fixed per-channel ``x * scale + offset`` (no weights); see the module docstring."""

    def __init__(self, input_normalization: str = "imagenet", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if input_normalization not in INPUT_NORMALIZATIONS:
            raise ValueError(f"input_normalization must be one of {INPUT_NORMALIZATIONS}, "
                             f"got {input_normalization!r}")
        self.input_normalization = input_normalization
        if input_normalization == "imagenet":
            self.scale = [s / LITE_STDDEV_RGB for s in preprocess_ops.STDDEV_RGB]
            self.offset = [(m - LITE_MEAN_RGB) / LITE_STDDEV_RGB for m in preprocess_ops.MEAN_RGB]
        else:
            self.scale, self.offset = [1.0] * 3, [0.0] * 3

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        scale = tf.constant(self.scale, inputs.dtype)
        offset = tf.constant(self.offset, inputs.dtype)
        return inputs * scale + offset

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "input_normalization": self.input_normalization}


@dataclasses.dataclass(frozen=True)
class _Ops:
    """Creates conv / batch-norm / ReLU6 layers with shared settings."""

    use_sync_bn: bool
    norm_momentum: float
    norm_epsilon: float
    kernel_regularizer: tf_keras.regularizers.Regularizer | None

    def conv(self, x: tf.Tensor, filters: int, kernel_size: int, name: str,
             strides: int = 1) -> tf.Tensor:
        return tf_keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same", use_bias=False,
            kernel_initializer="VarianceScaling", kernel_regularizer=self.kernel_regularizer,
            name=name)(x)

    def depthwise(self, x: tf.Tensor, kernel_size: int, strides: int, name: str) -> tf.Tensor:
        return tf_keras.layers.DepthwiseConv2D(
            kernel_size, strides=strides, padding="same", use_bias=False,
            depthwise_initializer="VarianceScaling",
            depthwise_regularizer=self.kernel_regularizer, name=name)(x)

    def bn(self, x: tf.Tensor, name: str) -> tf.Tensor:
        return tf_keras.layers.BatchNormalization(
            momentum=self.norm_momentum, epsilon=self.norm_epsilon,
            synchronized=self.use_sync_bn, name=name)(x)

    def relu6(self, x: tf.Tensor, name: str) -> tf.Tensor:
        return tf_keras.layers.ReLU(max_value=6.0, name=name)(x)


def _mbconv(x: tf.Tensor, stage: Stage, input_filters: int, strides: int, index: int,
            drop_rate: float, ops: _Ops) -> tf.Tensor:
    """Mobile inverted bottleneck without SE: [expand 1x1] -> depthwise -> project 1x1."""
    name = f"block{index}"
    shortcut = x
    if stage.expand_ratio != 1:
        x = ops.conv(x, input_filters * stage.expand_ratio, 1, f"{name}_expand_conv")
        x = ops.relu6(ops.bn(x, f"{name}_expand_bn"), f"{name}_expand_relu6")
    x = ops.depthwise(x, stage.kernel_size, strides, f"{name}_depthwise_conv")
    x = ops.relu6(ops.bn(x, f"{name}_depthwise_bn"), f"{name}_depthwise_relu6")
    x = ops.bn(ops.conv(x, stage.output_filters, 1, f"{name}_project_conv"), f"{name}_project_bn")
    if strides == 1 and input_filters == stage.output_filters:
        # Always present (identity at rate 0) so the layer list never depends on the rate.
        x = nn_layers.StochasticDepth(drop_rate, name=f"{name}_drop")(x)
        x = tf_keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return x


def _blocks(model_id: str) -> list[tuple[Stage, int, int, bool]]:
    """``(stage, input_filters, strides, is_last_of_stage)`` for every block, in order."""
    blocks = []
    for stage in STAGES[model_id]:
        for repeat in range(stage.repeats):
            first = repeat == 0
            blocks.append((stage, stage.input_filters if first else stage.output_filters,
                           stage.stride if first else 1, repeat == stage.repeats - 1))
    return blocks


def _endpoint_stages(model_id: str) -> dict[int, int]:
    """``{stage_index: level}`` for the last stage of each stride (levels 2 and up)."""
    stages, stride, endpoints = STAGES[model_id], 2, {}  # the stem has stride 2
    for i, stage in enumerate(stages):
        stride *= stage.stride
        next_stride = stages[i + 1].stride if i + 1 < len(stages) else 2
        level = stride.bit_length() - 1
        if next_stride != 1 and level >= 2:
            endpoints[i] = level
    return endpoints


class EfficientNetLiteBackbone(tf_keras.Model):
    """Functional EfficientNet-Lite: image ``[B, H, W, 3]`` -> ``{level_str: feature map}``.

    Args:
        model_id: ``'lite0'``.
        input_specs: Input shape ``[B, H, W, 3]`` (any H, W; None for dynamic).
        stochastic_depth_drop_rate: See :class:`EfficientNetLite`.
        input_normalization: ``'imagenet'`` or ``'lite'``; see the module docstring.
        use_sync_bn, norm_momentum, norm_epsilon: Batch-norm settings.
        kernel_regularizer: Applied to every conv kernel (depthwise included), or None.
    """

    def __init__(
        self,
        model_id: str = "lite0",
        input_specs: tf_keras.layers.InputSpec | None = None,
        stochastic_depth_drop_rate: float = 0.0,
        input_normalization: str = "imagenet",
        use_sync_bn: bool = False,
        norm_momentum: float = 0.99,
        norm_epsilon: float = 0.001,
        kernel_regularizer: tf_keras.regularizers.Regularizer | None = None,
        **kwargs: Any,
    ) -> None:
        """Builds the graph; raises ValueError for an unknown model_id or normalization."""
        if model_id not in STAGES:
            raise ValueError(f"EfficientNet-Lite model_id must be one of {sorted(STAGES)}, "
                             f"got {model_id!r}")
        input_specs = input_specs or tf_keras.layers.InputSpec(shape=[None, None, None, 3])
        config = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")}
        ops = _Ops(use_sync_bn, norm_momentum, norm_epsilon, kernel_regularizer)
        inputs = tf_keras.Input(shape=input_specs.shape[1:])
        x = InputRescaling(input_normalization, name="input_rescaling")(inputs)
        x = ops.relu6(ops.bn(ops.conv(x, STEM_FILTERS, 3, "stem_conv", strides=2), "stem_bn"),
                      "stem_relu6")
        blocks, endpoints = _blocks(model_id), _endpoint_stages(model_id)
        outputs, stage_index = {}, 0
        for index, (stage, input_filters, strides, is_last) in enumerate(blocks):
            rate = stochastic_depth_drop_rate * index / len(blocks)
            x = _mbconv(x, stage, input_filters, strides, index, rate, ops)
            if is_last:
                if stage_index in endpoints:
                    outputs[str(endpoints[stage_index])] = x
                stage_index += 1
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._config_dict = config
        self._output_specs = {level: t.get_shape() for level, t in outputs.items()}

    @property
    def output_specs(self) -> dict[str, tf.TensorShape]:
        """``{level_str: TensorShape [B, H_l, W_l, C_l]}`` of the outputs."""
        return self._output_specs

    def get_config(self) -> dict[str, Any]:
        return dict(self._config_dict)

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None):
        return cls(**config)


def build_classifier_head(
    input_channels: int = 320,
    num_classes: int = NUM_IMAGENET_CLASSES,
    dropout_rate: float = DROPOUT_RATES["lite0"],
    norm_momentum: float = 0.99,
    norm_epsilon: float = 0.001,
) -> tf_keras.Model:
    """ImageNet head: 1x1 conv 1280 + BN + ReLU6, global average pool, dropout, dense logits.

    Args:
        input_channels: Channels of the backbone's top level (320 for Lite0).
        num_classes: Number of logits.
        dropout_rate: Dropout before the dense layer (training only).
        norm_momentum: Batch-norm momentum.
        norm_epsilon: Batch-norm epsilon.

    Returns:
        A functional model ``[B, h, w, input_channels] -> [B, num_classes]`` logits.
    """
    ops = _Ops(False, norm_momentum, norm_epsilon, None)
    features = tf_keras.Input(shape=[None, None, input_channels])
    x = ops.relu6(ops.bn(ops.conv(features, HEAD_FILTERS, 1, "head_conv"), "head_bn"),
                  "head_relu6")
    x = tf_keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = tf_keras.layers.Dropout(dropout_rate, name="dropout")(x)
    logits = tf_keras.layers.Dense(num_classes, name="logits")(x)
    return tf_keras.Model(features, logits, name="efficientnet_lite_classifier_head")


def build_classifier(backbone: EfficientNetLiteBackbone, head: tf_keras.Model) -> tf_keras.Model:
    """``image -> logits``: ``head`` applied to the backbone's top level."""
    top = max(backbone.output_specs, key=int)
    images = tf_keras.Input(shape=backbone.inputs[0].shape[1:])
    logits = head(backbone(images)[top])
    return tf_keras.Model(images, logits, name="efficientnet_lite_classifier")


def build_efficientnet_lite(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: tf_keras.regularizers.Regularizer | None = None,
    **kwargs: Any,
) -> EfficientNetLiteBackbone:
    """Model Garden backbone builder for ``backbone_config.type == 'efficientnet_lite'``.

    The activation is always ReLU6 (it defines Lite); ``norm_activation_config.activation`` is
    ignored here (Model Garden's heads still use it). Batch-norm settings are taken from it.

    Raises:
        ValueError: If the backbone type is not ``'efficientnet_lite'`` or settings are invalid.
    """
    del kwargs  # Accepted for factory compatibility.
    if backbone_config.type != BACKBONE_KEY:
        raise ValueError(f"backbone type must be {BACKBONE_KEY!r}, got {backbone_config.type!r}")
    cfg = backbone_config.get()
    return EfficientNetLiteBackbone(
        model_id=cfg.model_id,
        input_specs=input_specs,
        stochastic_depth_drop_rate=cfg.stochastic_depth_drop_rate,
        input_normalization=cfg.input_normalization,
        use_sync_bn=norm_activation_config.use_sync_bn,
        norm_momentum=norm_activation_config.norm_momentum,
        norm_epsilon=norm_activation_config.norm_epsilon,
        kernel_regularizer=l2_regularizer,
    )


def register() -> None:
    """Registers :func:`build_efficientnet_lite` as 'efficientnet_lite'; repeats are no-ops.

    Raises:
        KeyError: If a different builder is already registered under that key.
    """
    registry = getattr(backbone_factory, "_REGISTERED_BACKBONE_CLS", {})
    register_once(backbone_factory.register_backbone_builder, registry, BACKBONE_KEY,
                  build_efficientnet_lite)


register()
