"""``tsoda train`` refuses unusable training data before the first step."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tests.tsoda_helpers import write_tiny_config
from tsoda.errors import TrainingError
from tsoda.train import train


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
