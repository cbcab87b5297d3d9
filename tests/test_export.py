"""``tsoda export`` replaces OUTPUT/saved_model only after the new export succeeded."""

from __future__ import annotations

import pytest

from tests.tsoda_helpers import write_tiny_config
from tsoda.errors import TrainingError
from tsoda.training.export import export


def _broken_checkpoint(model_dir):
    """A model dir whose latest checkpoint exists but holds garbage."""
    model_dir.mkdir()
    (model_dir / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    (model_dir / "ckpt-1.index").write_bytes(b"not a checkpoint index")
    (model_dir / "ckpt-1.data-00000-of-00001").write_bytes(b"not checkpoint data")


def test_a_failing_export_keeps_the_previous_saved_model(tmp_path):
    label_map = tmp_path / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "flame" }\n')
    config = write_tiny_config(tmp_path / "tiny.config", "unused", label_map)
    _broken_checkpoint(tmp_path / "model")
    output = tmp_path / "out"
    previous = {"saved_model.pb": b"the model in use", "variables/variables.index": b"its index"}
    for name, data in previous.items():
        (output / "saved_model" / name).parent.mkdir(parents=True, exist_ok=True)
        (output / "saved_model" / name).write_bytes(data)
    with pytest.raises(TrainingError, match=r"export failed.*previous saved_model is kept"):
        export(config, tmp_path / "model", output)
    for name, data in previous.items():
        assert (output / "saved_model" / name).read_bytes() == data
    assert sorted(p.name for p in output.iterdir()) == ["saved_model"]  # no leftovers


def _untrained(tmp_path):
    """(config, checkpoint writer) of a tiny untrained model: ``write(prefix)`` saves it."""
    import tensorflow as tf

    from tsoda.config.experiment import build_experiment
    from tsoda.config.pipeline import load_pipeline_config
    from tsoda.training.train import build_model_and_task

    label_map = tmp_path / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "flame" }\n')
    config = write_tiny_config(tmp_path / "tiny.config", "unused", label_map)
    model = build_model_and_task(build_experiment(load_pipeline_config(config), config))[1]
    return config, tf.train.Checkpoint(model=model).write


@pytest.mark.slow
def test_a_successful_export_replaces_the_previous_saved_model(tmp_path):
    import tensorflow as tf

    config, write = _untrained(tmp_path)
    write(str(tmp_path / "model" / "ckpt-1"))
    (tmp_path / "model" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    output = tmp_path / "out"
    (output / "saved_model").mkdir(parents=True)
    (output / "saved_model" / "saved_model.pb").write_bytes(b"the old model")
    saved_model = export(config, tmp_path / "model", output)
    assert saved_model == output / "saved_model"
    assert tf.saved_model.load(str(saved_model)).signatures["serving_default"] is not None
    assert sorted(p.name for p in output.iterdir()) == [
        "label_map.pbtxt", "params.yaml", "pipeline.config", "saved_model"]


@pytest.mark.slow
def test_the_checkpoint_given_is_exported_not_the_latest(tmp_path):
    import tensorflow as tf

    config, write = _untrained(tmp_path)
    good = write(str(tmp_path / "elsewhere" / "ckpt-7"))
    _broken_checkpoint(tmp_path / "model")  # the latest of model_dir cannot be exported
    with pytest.raises(TrainingError, match="export failed"):
        export(config, tmp_path / "model", tmp_path / "out")
    saved_model = export(config, tmp_path / "model", tmp_path / "out", checkpoint=good)
    assert tf.saved_model.load(str(saved_model)).signatures["serving_default"] is not None
