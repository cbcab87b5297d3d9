"""``--set FIELD=VALUE``: overrides applied to the parsed config, checked against the schema,
and part of the resolved config a training run writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tsoda_helpers import write_tiny_config
from tsoda.config.pipeline import load_pipeline_config
from tsoda.errors import PipelineConfigError

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pipeline.config"
COSINE = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
ANCHORS = "model.ssd.anchor_generator.multiscale_anchor_generator"


@pytest.mark.parametrize("assignment,read,expected", [
    ("train_config.num_steps=600", lambda p: p.train_config.num_steps, 600),
    (f"{COSINE}.total_steps=600",
     lambda p: p.train_config.optimizer.momentum_optimizer.learning_rate
     .cosine_decay_learning_rate.total_steps, 600),
    ("train_input_reader.tf_record_input_reader.input_path=/w/train.record*",
     lambda p: list(p.train_input_reader.tf_record_input_reader.input_path),
     ["/w/train.record*"]),  # replaced, not appended
    ('train_config.fine_tune_checkpoint="/w/a b/ckpt-5"',
     lambda p: p.train_config.fine_tune_checkpoint, "/w/a b/ckpt-5"),
    ("train_config.fine_tune_checkpoint=", lambda p: p.train_config.fine_tune_checkpoint, ""),
    ("model.ssd.encode_background_as_zeros=true",
     lambda p: p.model.ssd.encode_background_as_zeros, True),
    ("model.ssd.post_processing.score_converter=SIGMOID",
     lambda p: p.model.ssd.post_processing.score_converter, 2),
    (f"{ANCHORS}.aspect_ratios=[0.5, 2.0]",
     lambda p: list(p.model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios),
     [0.5, 2.0]),
    ("model.ssd.image_resizer.fixed_shape_resizer={ height: 256 width: 192 }",
     lambda p: (p.model.ssd.image_resizer.fixed_shape_resizer.height,
                p.model.ssd.image_resizer.fixed_shape_resizer.width), (256, 192)),
    ("train_config.data_augmentation_options=[{ ssd_random_crop { } }]",
     lambda p: [s.WhichOneof("preprocessing_step")
                for s in p.train_config.data_augmentation_options], ["ssd_random_crop"]),
])
def test_an_override_sets_its_field(assignment, read, expected):
    assert read(load_pipeline_config(CONFIG, [assignment], warn=False)) == expected


def test_overrides_apply_in_order_and_leave_the_rest():
    plain = load_pipeline_config(CONFIG, warn=False)
    changed = load_pipeline_config(CONFIG, ["train_config.batch_size=2",
                                            "train_config.batch_size=4"], warn=False)
    assert changed.train_config.batch_size == 4
    changed.train_config.batch_size = plain.train_config.batch_size
    assert changed == plain


@pytest.mark.parametrize("assignment,problem", [
    ("train_config.num_step=600", "train_config has no field 'num_step'"),
    ("model.ssd.fpn.min_level=3", "model.ssd has no field 'fpn'"),
    ("train_config.batch_size.value=1", "train_config.batch_size is not a message"),
    ("train_config.num_steps", "expected FIELD=VALUE"),
    ("train_config.num_steps=abc", r"train_config.num_steps \(uint32\): Couldn't parse integer"),
    ("train_config.num_steps=6.5", r"train_config.num_steps \(uint32\): Couldn't parse integer"),
    ("model.ssd.encode_background_as_zeros=maybe", r"\(bool\)"),
    ("model.ssd.post_processing.score_converter=SIG", r"\(enum ScoreConverter\)"),
    ("model.ssd.image_resizer.fixed_shape_resizer={ size: 3 }", "no field named \"size\""),
    ("train_config.optimizer.adam_optimizer.epsilon=1e-7",
     "train_config.optimizer already sets momentum_optimizer, another member of oneof"),
    ("train_config.num_steps=5 batch_size: 2", "the value must be one value of the field"),
    ("model.ssd.num_classes=1 typo: 2", "no field named \"typo\""),
])
def test_a_wrong_override_is_one_line_naming_the_field(assignment, problem):
    with pytest.raises(PipelineConfigError, match=problem) as error:
        load_pipeline_config(CONFIG, [assignment], warn=False)
    assert str(error.value).startswith(f"{CONFIG}: --set {assignment}: ")
    assert "\n" not in str(error.value)


def _tiny(tmp_path: Path) -> Path:
    label_map = tmp_path / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "flame" }\n')
    return write_tiny_config(tmp_path / "tiny.config", "unused", label_map)


def test_train_writes_the_overrides_into_the_resolved_config(tmp_path, monkeypatch, capsys):
    import yaml

    from tsoda.cli import main
    from tsoda.training import train

    ran = {}

    def fake_train(experiment, dist, model_dir, steps, pseudo, every):
        ran["steps"] = steps
        return train.TrainResult(str(model_dir / "ckpt-7"), 0, steps, 1.0, 0.5)

    monkeypatch.setattr(train, "_train", fake_train)
    config = _tiny(tmp_path)
    assert main(["train", "--pipeline_config_path", str(config), "--model_dir",
                 str(tmp_path / "model"), "--set", "train_config.num_steps=7",
                 "--set", "train_config.batch_size=2", "--quiet"]) == 0
    assert ran["steps"] == 7
    resolved = load_pipeline_config(tmp_path / "model" / train.RESOLVED_PIPELINE)
    assert (resolved.train_config.num_steps, resolved.train_config.batch_size) == (7, 2)
    garden = yaml.safe_load((tmp_path / "model" / train.RESOLVED_MODEL_GARDEN).read_text())
    assert (garden["num_steps"], garden["batch_size"]) == (7, 2)
    assert "num_steps: 30" in config.read_text()  # the user's file is left as it was


def test_train_refuses_a_wrong_override_before_any_work(tmp_path, capsys):
    from tsoda.cli import main

    assert main(["train", "--pipeline_config_path", str(_tiny(tmp_path)), "--model_dir",
                 str(tmp_path / "model"), "--set", "train_config.num_step=7", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--set train_config.num_step=7: train_config has no " \
                                      "field 'num_step'" in error
    assert not (tmp_path / "model").exists()
