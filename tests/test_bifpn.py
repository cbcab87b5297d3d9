"""BiFPN decoder: shapes (incl. odd sizes), fusion weights, parameter counts, RetinaNet build."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.vision.configs import backbones, common
from official.vision.configs import retinanet as rcfg
from official.vision.modeling import factory
from official.vision.modeling.decoders import factory as decoder_factory

from tsoda.modeling import bifpn

CHANNELS = {2: 4, 3: 12, 4: 16, 5: 24}  # backbone channels per level


def pyramid_specs(image_hw: tuple[int, int], levels=(3, 4, 5), rounding=math.ceil):
    """Backbone output specs whose level sizes are ``rounding(image / 2**level)``."""
    return {str(lvl): tf.TensorShape([None, rounding(image_hw[0] / 2**lvl),
                                      rounding(image_hw[1] / 2**lvl), CHANNELS[lvl]])
            for lvl in levels}


def random_features(specs, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {k: tf.constant(rng.normal(size=[batch, *s[1:]]), tf.float32) for k, s in specs.items()}


def make_decoder(specs, min_level=3, max_level=6, **kwargs):
    kwargs = {"num_filters": 8, "num_repeats": 2, **kwargs}
    return bifpn.BiFPNDecoder(specs, min_level=min_level, max_level=max_level, **kwargs)


def fusion_layers(model):
    return [layer for layer in model.layers if isinstance(layer, bifpn.FastNormalizedFusion)]


@pytest.mark.parametrize(("image_hw", "max_level", "expected_hw"), [
    ((64, 64), 6, {3: (8, 8), 4: (4, 4), 5: (2, 2), 6: (1, 1)}),
    ((64, 128), 7, {3: (8, 16), 4: (4, 8), 5: (2, 4), 6: (1, 2), 7: (1, 1)}),
    ((80, 80), 6, {3: (10, 10), 4: (5, 5), 5: (3, 3), 6: (2, 2)}),   # odd sizes, ceil rounding
    ((88, 40), 7, {3: (11, 5), 4: (6, 3), 5: (3, 2), 6: (2, 1), 7: (1, 1)}),
])
def test_output_levels_and_shapes(image_hw, max_level, expected_hw):
    specs = pyramid_specs(image_hw, levels=(2, 3, 4, 5))  # level 2 is below min_level: ignored
    model = make_decoder(specs, max_level=max_level)
    outputs = model(random_features(specs), training=False)
    assert sorted(outputs, key=int) == [str(lvl) for lvl in range(3, max_level + 1)]
    for level, (height, width) in expected_hw.items():
        assert outputs[str(level)].shape == (2, height, width, 8)
        assert model.output_specs[str(level)].as_list() == [None, height, width, 8]
        assert np.all(np.isfinite(outputs[str(level)].numpy()))


def test_backbone_that_rounds_sizes_down_is_cropped_and_padded():
    specs = pyramid_specs((88, 88), rounding=math.floor)  # 11, 5, 2 (ceil pooling gives 3)
    outputs = make_decoder(specs, max_level=6)(random_features(specs), training=True)
    assert {k: tuple(v.shape[1:3]) for k, v in outputs.items()} == {
        "3": (11, 11), "4": (5, 5), "5": (2, 2), "6": (1, 1)}


def test_dynamic_spatial_sizes_run_at_several_resolutions():
    specs = {k: tf.TensorShape([None, None, None, s[-1]])
             for k, s in pyramid_specs((64, 64)).items()}
    model = make_decoder(specs, max_level=6)
    for image_hw in [(64, 64), (80, 48), (56, 72)]:
        outputs = model(random_features(pyramid_specs(image_hw), batch=1), training=False)
        assert [tuple(outputs[str(lvl)].shape[1:3]) for lvl in (3, 6)] == [
            (math.ceil(image_hw[0] / 8), math.ceil(image_hw[1] / 8)),
            (math.ceil(image_hw[0] / 64), math.ceil(image_hw[1] / 64))]


def test_fast_normalized_fusion_math_and_non_negative_weights():
    layer = bifpn.FastNormalizedFusion()
    a, b = tf.fill([1, 2, 2, 3], 2.0), tf.fill([1, 2, 2, 3], 10.0)
    layer([a, b])
    layer.raw_weights.assign([1.0, 3.0])
    np.testing.assert_allclose(layer([a, b]).numpy(), (2 + 30) / (4 + 1e-4), rtol=1e-6)
    layer.raw_weights.assign([-5.0, 1.0])  # a negative raw weight switches its input off
    np.testing.assert_allclose(layer.fusion_weights.numpy(), [0.0, 1.0])
    np.testing.assert_allclose(layer([a, b]).numpy(), 10 / (1 + 1e-4), rtol=1e-6)


def test_fusion_weights_are_trainable_and_gradients_reach_them_and_the_inputs():
    specs = pyramid_specs((64, 64))
    model = make_decoder(specs, max_level=6, num_repeats=2)
    features = random_features(specs)
    with tf.GradientTape() as tape:
        tape.watch(features)
        outputs = model(features, training=True)
        loss = tf.add_n([tf.reduce_sum(tf.square(t)) for t in outputs.values()])
    layers = fusion_layers(model)
    assert len(layers) == 2 * 2 * 3  # repeats * (top-down + bottom-up) * (levels - 1)
    raw = [layer.raw_weights for layer in layers]
    assert all(any(v is w for w in model.trainable_variables) for v in raw)
    assert all(np.all(layer.fusion_weights.numpy() >= 0) for layer in layers)
    grads = tape.gradient(loss, {"raw": raw, "features": features})
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads["raw"])
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads["features"].values())


def test_num_repeats_adds_a_fixed_number_of_parameters_per_repeat():
    specs, filters, levels = pyramid_specs((64, 64)), 8, 4
    counts = [make_decoder(specs, max_level=6, num_repeats=r).count_params() for r in (1, 2, 3)]
    nodes = 2 * (levels - 1)
    conv_and_bn = nodes * (9 * filters + filters * filters + 4 * filters)
    fusion_weights = 2 * (levels - 1) + 3 * (levels - 2) + 2
    assert counts[1] - counts[0] == counts[2] - counts[1] == conv_and_bn + fusion_weights


def test_separable_conv_has_fewer_parameters_than_plain_conv():
    specs, filters, nodes = pyramid_specs((64, 64)), 8, 2 * 2 * 3
    separable = make_decoder(specs, use_separable_conv=True).count_params()
    plain = make_decoder(specs, use_separable_conv=False).count_params()
    per_node = 9 * filters * filters - (9 * filters + filters * filters)
    assert plain - separable == nodes * per_node


@pytest.mark.parametrize(("separable", "kernels_per_node"), [(True, 2), (False, 1)])
def test_l2_regularizer_applies_to_every_conv_kernel(separable, kernels_per_node):
    specs = pyramid_specs((64, 64))  # no level has 8 channels: 3 lateral 1x1 convs
    model = make_decoder(specs, use_separable_conv=separable,
                         kernel_regularizer=tf_keras.regularizers.l2(1e-4))
    assert len(model.losses) == 3 + 2 * 2 * 3 * kernels_per_node
    assert all(float(loss) > 0 for loss in model.losses)


def test_lateral_projection_is_skipped_when_channels_already_match():
    specs = {"3": tf.TensorShape([None, 8, 8, 8]), "4": tf.TensorShape([None, 4, 4, 16])}
    names = [layer.name for layer in make_decoder(specs, max_level=5).layers]
    assert "lateral_4_conv" in names and "lateral_3_conv" not in names


@pytest.mark.parametrize("use_sync_bn", [False, True])
def test_batch_norm_follows_norm_settings(use_sync_bn):
    model = make_decoder(pyramid_specs((64, 64)), use_sync_bn=use_sync_bn,
                         norm_momentum=0.9, norm_epsilon=1e-2)
    norms = [lyr for lyr in model.layers if isinstance(lyr, tf_keras.layers.BatchNormalization)]
    assert norms and all(n.synchronized == use_sync_bn for n in norms)
    assert all(n.momentum == 0.9 and n.epsilon == 1e-2 for n in norms)


def retinanet_config(decoder: bifpn.Decoder) -> rcfg.RetinaNet:
    return rcfg.RetinaNet(
        num_classes=3, input_size=[128, 128, 3], min_level=3, max_level=6,
        anchor=rcfg.Anchor(num_scales=1, aspect_ratios=[1.0]),
        backbone=backbones.Backbone(type="mobilenet", mobilenet=backbones.MobileNet(
            model_id="MobileNetV2", filter_size_scale=0.35)),
        decoder=decoder,
        head=rcfg.RetinaNetHead(num_convs=1, num_filters=16, use_separable_conv=True),
        detection_generator=rcfg.DetectionGenerator(max_num_detections=10),
        norm_activation=common.NormActivation(activation="relu6", use_sync_bn=False))


def test_build_retinanet_with_bifpn_trains_and_infers():
    decoder = bifpn.Decoder(type="bifpn", bifpn=bifpn.BiFPN(num_filters=16, num_repeats=2))
    model = factory.build_retinanet(tf_keras.layers.InputSpec(shape=[None, 128, 128, 3]),
                                    retinanet_config(decoder),
                                    l2_regularizer=tf_keras.regularizers.l2(1e-5))
    assert isinstance(model.decoder, bifpn.BiFPNDecoder)
    assert len(model.decoder.losses) > 0
    images = tf.random.uniform([2, 128, 128, 3])
    train = model(images, training=True)
    assert {k: v.shape[1] for k, v in train["cls_outputs"].items()} == {
        "3": 16, "4": 8, "5": 4, "6": 2}
    assert train["box_outputs"]["6"].shape == (2, 2, 2, 4)
    infer = model(images, image_shape=tf.constant([[128, 128]] * 2), training=False)
    assert infer["detection_boxes"].shape == (2, 10, 4)
    assert infer["num_detections"].shape == (2,)


def test_decoder_config_round_trips_through_override():
    config = bifpn.Decoder(type="bifpn")
    config.override({"bifpn": {"num_filters": 32, "num_repeats": 4}})
    assert config.get() == bifpn.BiFPN(num_filters=32, num_repeats=4)
    assert config.as_dict()["bifpn"]["use_separable_conv"] is True


def test_register_twice_is_a_no_op_and_the_factory_builds_bifpn():
    bifpn.register()
    bifpn.register()
    config = retinanet_config(bifpn.Decoder(type="bifpn", bifpn=bifpn.BiFPN(num_filters=8)))
    built = decoder_factory.build_decoder(pyramid_specs((128, 128)), config)
    assert isinstance(built, bifpn.BiFPNDecoder)
    assert sorted(built.output_specs) == ["3", "4", "5", "6"]


@pytest.mark.parametrize("fusion", ["sum", "weighted", "softmax"])
def test_invalid_fusion_raises(fusion):
    with pytest.raises(ValueError, match="fusion"):
        make_decoder(pyramid_specs((64, 64)), fusion=fusion)
    config = retinanet_config(bifpn.Decoder(type="bifpn", bifpn=bifpn.BiFPN(fusion=fusion)))
    with pytest.raises(ValueError, match="fusion"):
        decoder_factory.build_decoder(pyramid_specs((64, 64)), config)


@pytest.mark.parametrize(("levels", "min_level", "max_level", "message"), [
    ((4, 5), 3, 6, "backbone levels"),
    ((3, 5), 3, 6, "backbone levels"),
    ((3, 4, 5), 4, 4, "max_level > min_level"),
])
def test_unusable_levels_raise(levels, min_level, max_level, message):
    with pytest.raises(ValueError, match=message):
        make_decoder(pyramid_specs((64, 64), levels=levels), min_level, max_level)


def test_get_config_rebuilds_an_equivalent_decoder():
    model = make_decoder(pyramid_specs((64, 64)), max_level=7, num_repeats=1, activation="relu")
    clone = bifpn.BiFPNDecoder.from_config(model.get_config())
    assert clone.count_params() == model.count_params()
    assert clone.output_specs == model.output_specs
