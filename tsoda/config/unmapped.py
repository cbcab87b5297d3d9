"""The declared fields the mapping onto Model Garden does not turn into a setting.

Every leaf field of ``protos/pipeline.proto`` is either read by the mapping
(``tsoda/config/experiment.py``) or listed here (``tests/test_unmapped.py`` checks
both ways). Two kinds are listed:

- ``IGNORED``: accepted, with no effect on what is trained here; a config that sets one
  gets a warning naming the field, its line and the reason.
- ``FIXED``: behaviours Model Garden does not let us choose. A value that asks for what
  Model Garden does anyway is accepted silently; any other value is refused, since
  accepting it would train something else than the config says. (Read by the mapping.)

Where a ``FIXED`` field is left unset, the Object Detection API's default applies there
and Model Garden's behaviour here; for four of them the two differ: ``batch_norm.scale``
(unset: no learnt scale in the OD API), ``force_match_for_each_row`` (unset: false),
``override_base_feature_extractor_hyperparams`` (unset: false) and
``class_prediction_bias_init`` (unset: 0.0). The zoo's SSD MobileNetV2 FPN-lite config
sets all four to what Model Garden does; its EfficientDet configs leave
``override_base_feature_extractor_hyperparams`` unset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

LOG = logging.getLogger(__name__)

_NO_EVAL = "nothing evaluates during training; `tsoda evaluate` reports COCO metrics"
_EVAL_INPUT = "nothing evaluates during training; `tsoda evaluate --data_dir` reads VOC data"

IGNORED: dict[str, str] = {
    "model.ssd.matcher.argmax_matcher.use_matmul_gather":
        "a speed option of the OD API's matcher (same matches); Model Garden has its own",
    "model.ssd.anchor_generator.multiscale_anchor_generator.normalize_coordinates":
        "how the OD API stores anchors internally (same anchors); Model Garden's are in "
        "pixels and exported boxes are normalized either way",
    "train_config.data_augmentation_options.random_scale_crop_and_pad_to_square.output_size":
        "Model Garden's parser scales, crops and pads straight to the model's input size "
        "(fixed_shape_resizer); there is no intermediate size",
    "eval_config.batch_size": _NO_EVAL,
    "eval_config.metrics_set": _NO_EVAL,
    "eval_config.num_examples": _NO_EVAL,
    "eval_input_reader.label_map_path": _EVAL_INPUT,
    "eval_input_reader.shuffle": _EVAL_INPUT,
    "eval_input_reader.num_epochs": _EVAL_INPUT,
    "eval_input_reader.tf_record_input_reader.input_path": _EVAL_INPUT,
}


def _crops_to_the_input(pipeline) -> bool:
    size = pipeline.model.ssd.image_resizer.fixed_shape_resizer
    return size.height == size.width and all(
        option.random_scale_crop_and_pad_to_square.output_size == size.height
        for option in pipeline.train_config.data_augmentation_options
        if option.HasField("random_scale_crop_and_pad_to_square"))


# IGNORED fields whose value asks for what tsoda does anyway: no warning then.
AS_DONE_HERE: dict[str, Callable[[object], bool]] = {
    "eval_config.metrics_set":
        lambda pipeline: set(pipeline.eval_config.metrics_set) <= {"coco_detection_metrics"},
    "train_config.data_augmentation_options.random_scale_crop_and_pad_to_square.output_size":
        _crops_to_the_input,
}


@dataclass(frozen=True)
class Fixed:
    """A field whose behaviour Model Garden fixes: ``accepts(value)`` says whether the
    value asks for that behaviour; ``needs`` and ``reason`` explain a refusal."""

    path: str
    accepts: Callable[[object], bool]
    needs: str
    reason: str


_EXTRACTOR = "model.ssd.feature_extractor"
_BATCH_NORM = f"{_EXTRACTOR}.conv_hyperparams.batch_norm"
_PREDICTOR = "model.ssd.box_predictor.weight_shared_convolutional_box_predictor"
_MATCHER = "model.ssd.matcher.argmax_matcher"
_PRIOR_BIAS = -4.595  # Model Garden's class bias: -log((1 - 0.01) / 0.01), a prior of 0.01

FIXED: tuple[Fixed, ...] = (
    Fixed("model.ssd.normalize_loss_by_num_matches", bool, "true",
          "Model Garden divides the losses by the number of matched anchors (+1)"),
    Fixed(f"{_EXTRACTOR}.override_base_feature_extractor_hyperparams", bool, "true",
          "Model Garden applies conv_hyperparams' batch norm and weight decay to the "
          "backbone too"),
    Fixed(f"{_BATCH_NORM}.center", bool, "true", "Model Garden's batch norm learns an offset"),
    Fixed(f"{_BATCH_NORM}.scale", bool, "true", "Model Garden's batch norm learns a scale"),
    Fixed(f"{_BATCH_NORM}.train", bool, "true",
          "Model Garden trains every batch norm (freezing is not supported)"),
    Fixed(f"{_MATCHER}.ignore_thresholds", lambda value: not value, "false",
          "Model Garden's anchor labeler always uses the two thresholds"),
    Fixed(f"{_MATCHER}.negatives_lower_than_unmatched", bool, "true",
          "Model Garden's anchors below unmatched_threshold are negatives, those between "
          "the thresholds ignored"),
    Fixed(f"{_MATCHER}.force_match_for_each_row", bool, "true",
          "Model Garden always matches each box to its best anchor"),
    Fixed(f"{_PREDICTOR}.class_prediction_bias_init",
          lambda value: abs(value - _PRIOR_BIAS) <= 0.01, "-4.6",
          "Model Garden's head starts its class biases at -log(0.99 / 0.01) = -4.595"),
    Fixed(f"{_PREDICTOR}.share_prediction_tower", lambda value: not value, "false",
          "Model Garden's head has separate class and box towers"),
    Fixed("train_input_reader.num_epochs", lambda value: value == 0, "0",
          "training repeats the data until train_config.num_steps"),
)


def check_fixed(pipeline, check) -> None:
    """Refuses a FIXED field set to a value Model Garden cannot follow.

    ``check`` is the mapping's checker: ``check.require(condition, field, problem)``.
    """
    for fixed in FIXED:
        *parents, name = fixed.path.split(".")
        message = pipeline
        for parent in parents:
            message = getattr(message, parent)
        check.require(not message.HasField(name) or fixed.accepts(getattr(message, name)),
                      fixed.path, f"must be {fixed.needs}: {fixed.reason}")


def warn_ignored(settings: Iterable[tuple[str, str]], source, pipeline=None) -> None:
    """Logs one warning per IGNORED field among ``settings``: (field path, where it is set,
    e.g. "line 12" or "--set"); a field set in several places is named at the first. With
    the parsed ``pipeline``, a field set to what tsoda does anyway (AS_DONE_HERE: COCO
    metrics, a crop to the model's input size) is not warned about."""
    seen = {path for path, as_done in AS_DONE_HERE.items()
            if pipeline is not None and as_done(pipeline)}
    for path, where in settings:
        if path in IGNORED and path not in seen:
            seen.add(path)
            LOG.warning("%s: %s: %s has no effect in tsoda (%s)", source, where, path,
                        IGNORED[path])


def set_leaves(message, prefix: str = "") -> Iterable[str]:
    """The paths of the leaf fields set in ``message`` (repeated messages without index)."""
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.message_type is None or not field.message_type.fields:
            yield path
            continue
        for item in (value if is_repeated(field) else [value]):
            yield from set_leaves(item, path + ".")


def is_repeated(field) -> bool:
    """Whether a field descriptor is repeated (``is_repeated`` in newer protobuf, where
    ``label`` is deprecated; ``label`` in older ones)."""
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return field.label == field.LABEL_REPEATED
