"""``tsoda train`` (and export, and the loop's trainer) refuse unusable training data and
label maps before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from tests.tsoda_helpers import write_tiny_config
from tsoda.errors import PipelineConfigError, TrainingError
from tsoda.training.train import train

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pipeline.config"


def test_training_records_without_any_example_are_refused(tmp_path):
    label_map = tmp_path / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "flame" }\n')
    with tf.io.TFRecordWriter(str(tmp_path / "empty.record")):
        pass  # a record file holding no example, as older tools left behind
    config = write_tiny_config(tmp_path / "c.config", str(tmp_path / "empty.record*"),
                               label_map)
    with pytest.raises(TrainingError, match="hold no example"):
        train(config, tmp_path / "model", progress=False)
    assert not tf.train.latest_checkpoint(str(tmp_path / "model"))


TWO_CLASSES = 'item { id: 1 name: "flame" }\nitem { id: 2 name: "smoke" }\n'


@pytest.mark.parametrize("label_map,problem", [
    (None, r"train_input_reader.label_map_path: missing"),
    (TWO_CLASSES, r"model.ssd.num_classes is 1, but the label map .* has 2 class\(es\) "
                  r"with ids up to 2"),
    ('item { id: 3 name: "flame" }\n', r"model.ssd.num_classes is 1, .* ids up to 3"),
], ids=["missing", "more_classes", "id_too_high"])
def test_train_and_export_refuse_a_label_map_the_model_cannot_predict(tmp_path, label_map,
                                                                      problem):
    from tsoda.cli import main
    from tsoda.training.export import export

    path = tmp_path / "label_map.pbtxt"
    if label_map is not None:
        path.write_text(label_map)
    config = write_tiny_config(tmp_path / "c.config", str(tmp_path / "none*"),
                               path if label_map is not None else "")
    with pytest.raises(PipelineConfigError, match=problem):
        train(config, tmp_path / "model", progress=False)
    assert not (tmp_path / "model").exists()  # refused before any work
    with pytest.raises(PipelineConfigError, match=problem):
        export(config, tmp_path / "model", tmp_path / "out")
    assert main(["train", "--pipeline_config_path", str(config), "--model_dir",
                 str(tmp_path / "model"), "--quiet"]) == 2


def test_the_loop_trainer_refuses_more_classes_than_num_classes(tmp_path):
    from tsoda.loop.adapters import ModelGardenTrainer

    (tmp_path / "map.pbtxt").write_text(TWO_CLASSES)
    with pytest.raises(PipelineConfigError, match=r"model\.ssd\.num_classes is 1"):
        ModelGardenTrainer(CONFIG, tmp_path / "map.pbtxt")


@pytest.mark.slow
def test_moving_average_weights_are_what_the_final_checkpoint_holds(tmp_path):
    import numpy as np

    from tests.tsoda_helpers import synthetic_voc
    from tsoda.data.tfrecords import write_tfrecords

    data = synthetic_voc(tmp_path / "data", count=4)
    label_map = tmp_path / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "flame" }\n')
    write_tfrecords(data, data, label_map, tmp_path / "train.record")
    config = write_tiny_config(tmp_path / "p.config", str(tmp_path / "train.record*"),
                               label_map, steps=6)
    config.write_text(config.read_text().replace(
        "constant_learning_rate { learning_rate: 0.003 } } }",
        "constant_learning_rate { learning_rate: 0.003 } } }\n"
        "    use_moving_average: true moving_average_decay: 0.5"))
    assert "use_moving_average" in config.read_text()
    train(config, tmp_path / "model", num_train_steps=3, progress=False, checkpoint_every=3)
    result = train(config, tmp_path / "model", progress=False)  # resumes at step 3
    assert result.first_step == 3 and result.last_step == 6
    reader = tf.train.load_checkpoint(result.checkpoint)
    names = reader.get_variable_to_shape_map()
    averages = [n for n in names if "/.OPTIMIZER_SLOT/" in n
                and n.endswith("/average/.ATTRIBUTES/VARIABLE_VALUE")]
    assert averages  # the optimizer kept an average per trained weight
    assert reader.get_tensor("averages_in_model/.ATTRIBUTES/VARIABLE_VALUE")
    swapped = sum(not np.allclose(reader.get_tensor(slot.split("/.OPTIMIZER_SLOT/")[0] +
                                                    "/.ATTRIBUTES/VARIABLE_VALUE"),
                                  reader.get_tensor(slot)) for slot in averages)
    assert swapped > len(averages) // 2  # the model's weights are the averages, not the last


def test_the_loop_trainer_parses_the_config_once_and_warns_once(tmp_path, monkeypatch,
                                                                 caplog):
    import logging

    from tsoda.config.pipeline import LoadedConfig, load
    from tsoda.loop.adapters import ModelGardenTrainer
    from tsoda.training import export
    from tsoda.training import train as train_module

    (tmp_path / "map.pbtxt").write_text('item { id: 1 name: "flame" }\n')
    calls = []
    monkeypatch.setattr(train_module, "train", lambda config, *args, **kwargs: calls.append(
        config) or train_module.TrainResult("ckpt-5", 0, 5, 1.0, None))
    monkeypatch.setattr(export, "export", lambda config, *args, **kwargs: calls.append(config))
    config_path = tmp_path / "pipeline.config"  # the shipped config, with two ignored fields
    config_path.write_text(CONFIG.read_text().replace("output_size: 320", "output_size: 512")
                           .replace('"coco_detection_metrics"', '"pascal_voc_detection_metrics"'))
    with caplog.at_level(logging.WARNING, logger="tsoda.config.unmapped"):
        config = load(config_path)  # as the command line does
        trainer = ModelGardenTrainer(config, tmp_path / "map.pbtxt", progress=False)
        for round_dir in (tmp_path / "01", tmp_path / "02"):
            round_dir.mkdir()
            assert trainer.train(round_dir, "r.record*", 5, None) == "ckpt-5"
            trainer.export(round_dir, "ckpt-5")
    assert all(isinstance(config, LoadedConfig) for config in calls)
    assert [c.message.train_config.num_steps for c in calls] == [5] * 4
    assert calls[-1].source == tmp_path / "02" / "pipeline.config"
    # two ignored fields: warned when parsed, not once per round
    assert len(caplog.records) == 2
