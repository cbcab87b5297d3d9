"""BiFPN decoder (EfficientDet's bidirectional feature pyramid) for TF Model Garden.

The decoder takes backbone features ``{level_str: [B, H_l, W_l, C_l]}`` and returns
``{level_str: [B, H_l, W_l, num_filters]}`` for every level ``min_level..max_level``.
It is registered with Model Garden's decoder factory under the key ``'bifpn'``, so
``official.vision.modeling.factory.build_retinanet`` builds a RetinaNet with it once the model
config's ``decoder`` is a :class:`Decoder` with ``type='bifpn'``.

Spatial sizes need not be multiples of ``2**max_level``. Downsampling is a 3x3 stride-2 max pool
with ``'same'`` padding (size ``ceil(n / 2)``) and upsampling is nearest-neighbour x2. When a
resampled map does not match the size of the level it is fused into (odd sizes, or backbones
that round down), it is cropped at the bottom/right or zero-padded at the bottom/right to that
level's size; with static sizes this check happens at build time and costs nothing when the
sizes already agree.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import tensorflow as tf
import tf_keras
from official.modeling import hyperparams, tf_utils
from official.vision.configs import decoders as mg_decoders
from official.vision.modeling.decoders import factory as decoder_factory

from tsoda.modeling.registry import register_once

logger = logging.getLogger(__name__)

DECODER_KEY = "bifpn"
FUSION_EPSILON = 1e-4
SUPPORTED_FUSIONS = ("fast",)


@dataclasses.dataclass
class BiFPN(hyperparams.Config):
    """BiFPN decoder config (levels come from the RetinaNet config's min/max level).

    Attributes:
        num_filters: Channels of every output level.
        num_repeats: Number of stacked BiFPN layers (top-down + bottom-up passes).
        use_separable_conv: 3x3 depthwise-separable convs after each fusion if True, else plain.
        activation: Activation applied to each fused map before its conv.
        fusion: Feature fusion method; only ``'fast'`` (fast normalized fusion) is supported.
    """

    num_filters: int = 64
    num_repeats: int = 3
    use_separable_conv: bool = True
    activation: str = "swish"
    fusion: str = "fast"


@dataclasses.dataclass
class Decoder(mg_decoders.Decoder):
    """Model Garden's decoder oneof with a ``bifpn`` member added."""

    bifpn: BiFPN = dataclasses.field(default_factory=BiFPN)


class FastNormalizedFusion(tf_keras.layers.Layer):
    """Weighted sum ``sum(w_i * x_i) / (sum(w_i) + epsilon)`` with ``w_i = relu(v_i)``.

    One trainable scalar ``v_i`` per input, initialised to 1. All inputs must have one shape.
    """

    def __init__(self, epsilon: float = FUSION_EPSILON, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.raw_weights: tf.Variable | None = None

    def build(self, input_shape: list[tf.TensorShape]) -> None:
        if len(input_shape) < 2:
            raise ValueError(f"{self.name}: fusion needs at least 2 inputs, got {len(input_shape)}")
        self.raw_weights = self.add_weight(
            name="fusion_weight", shape=(len(input_shape),), initializer="ones", trainable=True
        )
        super().build(input_shape)

    @property
    def fusion_weights(self) -> tf.Tensor:
        """The effective, non-negative weights ``relu(v_i)``, shape ``[num_inputs]``."""
        return tf.nn.relu(self.raw_weights)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        weights = tf.nn.relu(tf.cast(self.raw_weights, inputs[0].dtype))
        total = tf.add_n([weights[i] * x for i, x in enumerate(inputs)])
        return total / (tf.reduce_sum(weights) + tf.cast(self.epsilon, inputs[0].dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


class MatchSpatialSize(tf_keras.layers.Layer):
    """Crops, then zero-pads, ``x`` at the bottom/right to the height and width of ``reference``.

    Called as ``layer([x, reference])``; channels and batch come from ``x``.
    """

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        x, reference = inputs
        target_hw = tf.shape(reference)[1:3]
        x = x[:, : target_hw[0], : target_hw[1], :]
        pad_hw = tf.maximum(target_hw - tf.shape(x)[1:3], 0)
        x = tf.pad(x, [[0, 0], [0, pad_hw[0]], [0, pad_hw[1]], [0, 0]])
        x.set_shape([x.shape[0], reference.shape[1], reference.shape[2], x.shape[3]])
        return x


@dataclasses.dataclass(frozen=True)
class _Ops:
    """Creates the decoder's layers with shared settings and names them."""

    num_filters: int
    use_separable_conv: bool
    activation: str
    use_sync_bn: bool
    norm_momentum: float
    norm_epsilon: float
    kernel_regularizer: tf_keras.regularizers.Regularizer | None

    def batch_norm(self, name: str) -> tf_keras.layers.Layer:
        return tf_keras.layers.BatchNormalization(
            momentum=self.norm_momentum,
            epsilon=self.norm_epsilon,
            synchronized=self.use_sync_bn,
            name=name,
        )

    def project(self, x: tf.Tensor, name: str) -> tf.Tensor:
        """1x1 conv + batch norm to ``num_filters`` channels; identity if already there."""
        if x.shape[-1] == self.num_filters:
            return x
        x = tf_keras.layers.Conv2D(
            self.num_filters, 1, use_bias=False, kernel_initializer="VarianceScaling",
            kernel_regularizer=self.kernel_regularizer, name=f"{name}_conv",
        )(x)
        return self.batch_norm(f"{name}_bn")(x)

    def fuse(self, inputs: list[tf.Tensor], name: str) -> tf.Tensor:
        """Fast normalized fusion, activation, 3x3 (separable) conv, batch norm."""
        x = FastNormalizedFusion(name=f"{name}_fusion")(inputs)
        x = tf_keras.layers.Activation(tf_utils.get_activation(self.activation),
                                       name=f"{name}_act")(x)
        if self.use_separable_conv:
            conv = tf_keras.layers.SeparableConv2D(
                self.num_filters, 3, padding="same", use_bias=False,
                depthwise_initializer="VarianceScaling", pointwise_initializer="VarianceScaling",
                depthwise_regularizer=self.kernel_regularizer,
                pointwise_regularizer=self.kernel_regularizer, name=f"{name}_conv",
            )
        else:
            conv = tf_keras.layers.Conv2D(
                self.num_filters, 3, padding="same", use_bias=False,
                kernel_initializer="VarianceScaling",
                kernel_regularizer=self.kernel_regularizer, name=f"{name}_conv",
            )
        return self.batch_norm(f"{name}_bn")(conv(x))


def _match(x: tf.Tensor, reference: tf.Tensor, name: str) -> tf.Tensor:
    """Returns ``x`` resized by crop/pad to ``reference``'s H, W (no-op if statically equal)."""
    x_hw, ref_hw = x.shape[1:3], reference.shape[1:3]
    if x_hw.is_fully_defined() and ref_hw.is_fully_defined() and x_hw == ref_hw:
        return x
    return MatchSpatialSize(name=name)([x, reference])


def _downsample(x: tf.Tensor, name: str) -> tf.Tensor:
    return tf_keras.layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)


def _upsample(x: tf.Tensor, name: str) -> tf.Tensor:
    return tf_keras.layers.UpSampling2D(2, interpolation="nearest", name=name)(x)


def _input_pyramid(
    inputs: Mapping[str, tf.Tensor], min_level: int, max_level: int, ops: _Ops
) -> dict[int, tf.Tensor]:
    """Projects backbone levels to ``num_filters`` and max-pools the missing top levels."""
    top = min(max(int(level) for level in inputs), max_level)
    feats = {level: ops.project(inputs[str(level)], f"lateral_{level}")
             for level in range(min_level, top + 1)}
    for level in range(top + 1, max_level + 1):
        feats[level] = _downsample(feats[level - 1], f"extra_{level}_pool")
    return feats


def _bifpn_layer(feats: dict[int, tf.Tensor], repeat: int, ops: _Ops) -> dict[int, tf.Tensor]:
    """One BiFPN layer: a top-down pass then a bottom-up pass over ``feats``' levels."""
    low, high = min(feats), max(feats)
    prefix = f"bifpn{repeat}"
    td = {high: feats[high]}
    for level in range(high - 1, low - 1, -1):
        up = _upsample(td[level + 1], f"{prefix}_td{level}_up")
        up = _match(up, feats[level], f"{prefix}_td{level}_match")
        td[level] = ops.fuse([feats[level], up], f"{prefix}_td{level}")
    out = {low: td[low]}
    for level in range(low + 1, high + 1):
        down = _downsample(out[level - 1], f"{prefix}_bu{level}_down")
        down = _match(down, feats[level], f"{prefix}_bu{level}_match")
        parts = [feats[level], down] if level == high else [feats[level], td[level], down]
        out[level] = ops.fuse(parts, f"{prefix}_bu{level}")
    return out


def _validate(input_specs: Mapping[str, tf.TensorShape], min_level: int, max_level: int,
              fusion: str, num_repeats: int) -> None:
    """Raises ValueError for settings or backbone levels the decoder cannot use."""
    if fusion not in SUPPORTED_FUSIONS:
        raise ValueError(f"BiFPN fusion must be one of {SUPPORTED_FUSIONS}, got {fusion!r}")
    if max_level <= min_level:
        raise ValueError(f"BiFPN needs max_level > min_level, got {min_level}..{max_level}")
    if num_repeats < 1:
        raise ValueError(f"BiFPN num_repeats must be >= 1, got {num_repeats}")
    levels = {int(level) for level in input_specs}
    top = min(max(levels, default=min_level - 1), max_level)
    missing = [lvl for lvl in range(min_level, top + 1) if lvl not in levels]
    if top < min_level or missing:
        raise ValueError(f"BiFPN needs backbone levels {min_level}..{top} (at least "
                         f"{min_level}); backbone has {sorted(levels)}")
    for level in range(min_level, top + 1):
        if tf.TensorShape(input_specs[str(level)])[-1] is None:
            raise ValueError(f"BiFPN needs a static channel count for backbone level {level}")


class BiFPNDecoder(tf_keras.Model):
    """Functional BiFPN decoder: ``{level_str: tensor}`` in, ``{level_str: tensor}`` out.

    Backbone levels ``min_level..min(backbone top, max_level)`` get a 1x1 conv + batch norm
    when their channels differ from ``num_filters``; levels above the backbone's top are made by
    3x3 stride-2 max pooling of the (projected) level below. Then ``num_repeats`` BiFPN layers
    run a top-down pass (nearest x2 upsampling) and a bottom-up pass (3x3 stride-2 max pooling),
    each node fusing its inputs with :class:`FastNormalizedFusion`, then activation, 3x3 conv and
    batch norm. Odd spatial sizes are handled by crop/pad (see the module docstring). Backbone
    levels below ``min_level`` are accepted as inputs and ignored.
    """

    def __init__(
        self,
        input_specs: Mapping[str, tf.TensorShape],
        min_level: int = 3,
        max_level: int = 7,
        num_filters: int = 64,
        num_repeats: int = 3,
        use_separable_conv: bool = True,
        activation: str = "swish",
        fusion: str = "fast",
        use_sync_bn: bool = False,
        norm_momentum: float = 0.99,
        norm_epsilon: float = 0.001,
        kernel_regularizer: tf_keras.regularizers.Regularizer | None = None,
        **kwargs: Any,
    ) -> None:
        """Builds the graph; raises ValueError for unsupported settings or missing levels."""
        config = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")}
        _validate(input_specs, min_level, max_level, fusion, num_repeats)
        ops = _Ops(num_filters, use_separable_conv, activation, use_sync_bn, norm_momentum,
                   norm_epsilon, kernel_regularizer)
        inputs = {str(level): tf_keras.Input(shape=tf.TensorShape(spec)[1:])
                  for level, spec in input_specs.items()}
        feats = _input_pyramid(inputs, min_level, max_level, ops)
        for repeat in range(num_repeats):
            feats = _bifpn_layer(feats, repeat, ops)
        outputs = {str(level): feats[level] for level in range(min_level, max_level + 1)}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._config_dict = config
        self._output_specs = {level: t.get_shape() for level, t in outputs.items()}

    @property
    def output_specs(self) -> dict[str, tf.TensorShape]:
        """``{level_str: TensorShape}`` of the outputs, as Model Garden's heads expect."""
        return self._output_specs

    def get_config(self) -> dict[str, Any]:
        return dict(self._config_dict)

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> BiFPNDecoder:
        return cls(**config)


def build_bifpn_decoder(
    input_specs: Mapping[str, tf.TensorShape],
    model_config: hyperparams.Config,
    l2_regularizer: tf_keras.regularizers.Regularizer | None = None,
    **kwargs: Any,
) -> BiFPNDecoder:
    """Model Garden decoder builder for ``model_config.decoder.type == 'bifpn'``.

    Args:
        input_specs: Backbone ``output_specs``, ``{level_str: TensorShape [B, H, W, C]}``.
        model_config: The whole model config (e.g. RetinaNet): reads ``decoder.get()``,
            ``min_level``, ``max_level`` and ``norm_activation``.
        l2_regularizer: Regularizer for conv kernels, or None.
        **kwargs: Extra factory arguments; ignored.

    Returns:
        The built decoder.

    Raises:
        ValueError: If the decoder type is not ``'bifpn'`` or the settings are unsupported.
    """
    del kwargs  # Accepted for factory compatibility; nothing else is configurable.
    if model_config.decoder.type != DECODER_KEY:
        raise ValueError(f"decoder type must be {DECODER_KEY!r}, got {model_config.decoder.type!r}")
    cfg = model_config.decoder.get()
    norm = model_config.norm_activation
    return BiFPNDecoder(
        input_specs=input_specs,
        min_level=model_config.min_level,
        max_level=model_config.max_level,
        num_filters=cfg.num_filters,
        num_repeats=cfg.num_repeats,
        use_separable_conv=cfg.use_separable_conv,
        activation=cfg.activation,
        fusion=cfg.fusion,
        use_sync_bn=norm.use_sync_bn,
        norm_momentum=norm.norm_momentum,
        norm_epsilon=norm.norm_epsilon,
        kernel_regularizer=l2_regularizer,
    )


def register() -> None:
    """Registers :func:`build_bifpn_decoder` under 'bifpn'; repeated calls are no-ops.

    Raises:
        KeyError: If a different builder is already registered under that key.
    """
    registry = getattr(decoder_factory, "_REGISTERED_DECODER_CLS", {})
    register_once(decoder_factory.register_decoder_builder, registry, DECODER_KEY,
                  build_bifpn_decoder)


register()
