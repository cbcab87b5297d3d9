"""An honest schema: every leaf field of pipeline.proto is read by the mapping onto Model
Garden, or listed in tsoda/config/unmapped.py with its reason (and then not read); the
listed fields are warned about or refused.

What the mapping reads is measured: the experiment is built from configs that take every
branch (both decoders, three backbones, both optimizers, both schedules, every
augmentation), their messages wrapped in a proxy that records each field read."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from tsoda.config.experiment import build_experiment
from tsoda.config.overrides import apply_override
from tsoda.config.pipeline import load_pipeline_config, message_class, parse_pipeline_config
from tsoda.config.unmapped import FIXED, IGNORED, is_repeated
from tsoda.errors import PipelineConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SEED_CONFIG = CONFIGS.parent / "tsoda" / "demo" / "seed_model" / "pipeline.config"


def leaves(descriptor, prefix: str = "") -> list[str]:
    """Dotted paths of the leaf fields: scalars, enums, repeated scalars, empty messages."""
    found = []
    for field in descriptor.fields:
        path = prefix + field.name
        if field.message_type is not None and field.message_type.fields:
            found += leaves(field.message_type, path + ".")
        else:
            found.append(path)
    return found


class Recorder:
    """A message whose field reads are recorded as dotted paths into ``reads``."""

    def __init__(self, message, path: str, reads: set[str]) -> None:
        object.__setattr__(self, "_message", message)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str):
        value = getattr(self._message, name)
        field = self._message.DESCRIPTOR.fields_by_name.get(name)
        if field is None:  # a method, an enum type or value
            return value
        path = self._path + name
        self._reads.add(path)
        if field.message_type is None:
            return value
        if is_repeated(field):
            return [Recorder(item, path + ".", self._reads) for item in value]
        return Recorder(value, path + ".", self._reads)

    def __setattr__(self, name, value):
        raise AssertionError(f"the mapping writes {self._path}{name}")

    def HasField(self, name: str) -> bool:
        self._reads.add(self._path + name)
        return self._message.HasField(name)

    def WhichOneof(self, group: str):
        chosen = self._message.WhichOneof(group)
        if chosen is not None:
            self._reads.add(self._path + chosen)
        return chosen

    def __eq__(self, other) -> bool:  # comparing whole messages reads all their fields
        for side in (self, other):
            self._reads.update(leaves(side._message.DESCRIPTOR, side._path))
        return self._message == other._message

    __hash__ = None


def _variants():
    """The shipped configs, and pipeline.config with the branches they do not take."""
    yield from (load_pipeline_config(CONFIGS / name, warn=False) for name in (
        "pipeline.config", "efficientdet_d0_slim.config", "efficientdet_lite0_slim.config"))
    for optimizer in ("momentum_optimizer", "adam_optimizer"):
        for rate in ("constant_learning_rate", "cosine_decay_learning_rate"):
            pipeline = load_pipeline_config(CONFIGS / "pipeline.config", warn=False)
            schedule = getattr(getattr(pipeline.train_config.optimizer, optimizer)
                               .learning_rate, rate)
            schedule.SetInParent()
            if rate == "cosine_decay_learning_rate":
                schedule.warmup_steps = 10
            pipeline.train_config.optimizer.use_moving_average = True
            pipeline.train_config.data_augmentation_options.add().ssd_random_crop.SetInParent()
            yield pipeline


def mapping_reads() -> set[str]:
    reads: set[str] = set()
    for pipeline in _variants():
        build_experiment(Recorder(pipeline, "", reads), "variant.config")
    return reads


@pytest.fixture(scope="module")
def schema_leaves() -> list[str]:
    return leaves(message_class("TrainEvalPipelineConfig").DESCRIPTOR)


def uncovered(fields: list[str], reads: set[str]) -> set[str]:
    return set(fields) - reads - set(IGNORED)


def test_every_declared_field_is_mapped_or_listed(schema_leaves):
    reads = mapping_reads()
    assert uncovered(schema_leaves, reads) == set(), \
        "declared in pipeline.proto but read by nothing: map it or add it to IGNORED/FIXED"
    assert reads & set(IGNORED) == set(), "read by the mapping, yet warned as ignored"
    assert set(IGNORED) <= set(schema_leaves)  # no entry for a field the schema lacks
    assert {fixed.path for fixed in FIXED} <= reads  # checked by the mapping
    assert len(schema_leaves) > 100


def test_a_field_read_by_nothing_is_reported(schema_leaves):
    added = "model.ssd.some_new_field"
    assert uncovered([*schema_leaves, added], mapping_reads()) == {added}


def _config(replace: str = "", by: str = "") -> str:
    text = (CONFIGS / "pipeline.config").read_text()
    assert replace in text
    return text.replace(replace, by) if replace else text


def test_an_ignored_field_is_warned_once_with_its_path_and_line(caplog):
    text = _config('eval_config { metrics_set: "coco_detection_metrics" }',
                   'eval_config {\n  metrics_set: "a"\n  metrics_set: "b"\n}')
    line = text.splitlines().index('  metrics_set: "a"') + 1
    with caplog.at_level(logging.WARNING, logger="tsoda.config.unmapped"):
        parse_pipeline_config(text, "my.config", overrides=["eval_config.num_examples=5"])
    messages = [record.getMessage() for record in caplog.records]
    assert sum("eval_config.metrics_set" in m for m in messages) == 1
    assert f"my.config: line {line}: eval_config.metrics_set has no effect" in "\n".join(messages)
    assert any(m.startswith("my.config: --set: eval_config.num_examples has no effect")
               for m in messages)
    caplog.clear()
    parse_pipeline_config(text, "my.config", warn=False)
    assert not caplog.records


def test_the_shipped_configs_load_without_warnings_and_a_differing_value_still_warns(caplog):
    """COCO metrics and a crop to the model's own input size are what tsoda does anyway;
    another crop size is not, and is named."""
    with caplog.at_level(logging.WARNING, logger="tsoda.config.unmapped"):
        for path in [*sorted(CONFIGS.glob("*.config")), SEED_CONFIG]:
            load_pipeline_config(path)
        assert [record.getMessage() for record in caplog.records] == []
        parse_pipeline_config(_config("output_size: 320", "output_size: 512"), "my.config")
    assert len(caplog.records) == 1
    assert "random_scale_crop_and_pad_to_square.output_size has no effect" in \
        caplog.records[0].getMessage()


@pytest.mark.parametrize("field,value,accepted", [
    ("normalize_loss_by_num_matches", "false", False),
    ("normalize_loss_by_num_matches", "true", True),
    ("class_prediction_bias_init", "0.0", False),
    ("class_prediction_bias_init", "-4.6", True),
    ("share_prediction_tower", "true", False),
    ("force_match_for_each_row", "false", False),
    ("force_match_for_each_row", "true", True),
    ("negatives_lower_than_unmatched", "false", False),
    ("ignore_thresholds", "true", False),
    ("scale", "false", False),
    ("scale", "true", True),
    ("train", "false", False),
    ("override_base_feature_extractor_hyperparams", "false", False),
    ("num_epochs", "3", False),
    ("num_epochs", "0", True),
])
def test_a_behaviour_model_garden_fixes_is_refused_unless_asked_as_it_is(field, value,
                                                                         accepted):
    fixed = next(f for f in FIXED if f.path.endswith("." + field))
    pipeline = load_pipeline_config(CONFIGS / "pipeline.config", warn=False)
    apply_override(pipeline, f"{fixed.path}={value}")
    if ".conv_hyperparams." in fixed.path:  # the box predictor's must stay the same
        apply_override(pipeline, fixed.path.replace(
            "feature_extractor", "box_predictor.weight_shared_convolutional_box_predictor") +
            f"={value}")
    if accepted:
        build_experiment(pipeline, "x.config")
        return
    with pytest.raises(PipelineConfigError, match=f"x.config: {re.escape(fixed.path)}: "
                                                  f"must be {re.escape(fixed.needs)}: "):
        build_experiment(pipeline, "x.config")
