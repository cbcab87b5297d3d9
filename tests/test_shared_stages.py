"""SharedFirstStage: a first stage on the same examples is trained once; the rest passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tensorflow as tf

from tsoda.errors import DivergedError
from tsoda.simulation.stages import SharedFirstStage, records_digest


class ConfigTrainer:
    """Writes a pipeline.config and a checkpoint marker per training; logs its calls."""

    initial_checkpoint = "init/ckpt"

    def __init__(self, config: str = "config-a", diverge: bool = False) -> None:
        self.calls: list[tuple] = []
        self.config, self.diverge = config, diverge

    def fingerprint(self) -> str:
        return self.config

    def train(self, round_dir, records, steps, warm_start, pseudo=None):
        self.calls.append((Path(round_dir).name, steps, warm_start, pseudo))
        if self.diverge:
            raise DivergedError(round_dir, 42)
        Path(round_dir).mkdir(parents=True, exist_ok=True)
        (Path(round_dir) / "model").mkdir(exist_ok=True)
        (Path(round_dir) / "model" / "ckpt").write_text("weights")
        (Path(round_dir) / "pipeline.config").write_text(f"num_steps: {steps}\n")
        return str(Path(round_dir) / "model" / "ckpt")

    def export(self, round_dir, checkpoint):
        return Path(round_dir) / "export" / checkpoint


def _example(name: bytes, reverse: bool = False) -> bytes:
    """A serialized tf.train.Example with two features, their map entries in either order:
    the same content in other bytes, as two processes may write it. (Serialized messages
    concatenate to their merge, so each feature is serialized alone.)"""
    parts = []
    for key, feature in (("image/filename", tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[name]))), ("image/height", tf.train.Feature(
                int64_list=tf.train.Int64List(value=[len(name)])))):
        example = tf.train.Example()
        example.features.feature[key].CopyFrom(feature)
        parts.append(example.SerializeToString())
    return b"".join(reversed(parts) if reverse else parts)


def _write(folder: Path, shards: list[list[bytes]], reverse: bool = False) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for index, records in enumerate(shards):
        with tf.io.TFRecordWriter(str(folder / f"train.record-{index}")) as writer:
            for record in records:
                writer.write(_example(record, reverse))
    return str(folder / "train.record*")


def test_the_digest_ignores_order_and_sharding_but_not_content(tmp_path):
    a = _write(tmp_path / "a", [[b"x", b"y"], [b"z"]])
    b = _write(tmp_path / "b", [[b"z", b"x", b"y"]], reverse=True)
    c = _write(tmp_path / "c", [[b"z", b"x", b"w"]])
    assert records_digest(a) == records_digest(b) != records_digest(c)


def test_a_first_stage_trains_once_and_its_config_goes_beside_each_round(tmp_path):
    inner = ConfigTrainer()
    shared = SharedFirstStage(inner, tmp_path / "stages", echo=lambda line: None)
    one = shared.train(tmp_path / "loopA" / "01", _write(tmp_path / "r1", [[b"x", b"y"]]),
                       10, "init/ckpt")
    two = shared.train(tmp_path / "loopB" / "01", _write(tmp_path / "r2", [[b"y"], [b"x"]]),
                       10, "init/ckpt")
    assert one == two and len(inner.calls) == 1
    assert Path(one).parent.parent.parent == tmp_path / "stages"
    assert (tmp_path / "loopB" / "01" / "pipeline.config").read_text() == "num_steps: 10\n"
    assert json.loads((Path(one).parent.parent / "stage.json").read_text()) == \
        {"checkpoint": "model/ckpt"}  # relative: the work dir may move
    shared.train(tmp_path / "loopC" / "01", _write(tmp_path / "r3", [[b"x", b"y"]]), 20,
                 "init/ckpt")  # other steps: another stage
    assert len(inner.calls) == 2 and shared.fingerprint() == "config-a"


def test_later_rounds_and_pseudo_streams_train_as_usual(tmp_path):
    inner = ConfigTrainer()
    shared = SharedFirstStage(inner, tmp_path / "stages", echo=lambda line: None)
    records = _write(tmp_path / "r", [[b"x"]])
    for _ in range(2):
        shared.train(tmp_path / "02", records, 10, "round1/ckpt")
        shared.train(tmp_path / "01", records, 10, "init/ckpt", pseudo="stream")
    assert [call[0] for call in inner.calls] == ["02", "01", "02", "01"]
    assert shared.export(tmp_path / "02", "c") == tmp_path / "02" / "export" / "c"


def _quiet(inner, folder):
    return SharedFirstStage(inner, folder, echo=lambda line: None)


def test_another_config_is_another_stage(tmp_path):
    records = _write(tmp_path / "r", [[b"x"]])
    a, b = ConfigTrainer("config-a"), ConfigTrainer("config-b")
    first = _quiet(a, tmp_path / "stages").train(tmp_path / "1", records, 10, "init/ckpt")
    second = _quiet(b, tmp_path / "stages").train(tmp_path / "2", records, 10, "init/ckpt")
    assert first != second and len(a.calls) == len(b.calls) == 1


def test_a_stage_whose_checkpoint_is_gone_is_trained_again(tmp_path):
    inner, records = ConfigTrainer(), _write(tmp_path / "r", [[b"x"]])
    checkpoint = _quiet(inner, tmp_path / "stages").train(tmp_path / "1", records, 10,
                                                          "init/ckpt")
    Path(checkpoint).unlink()
    again = _quiet(inner, tmp_path / "stages").train(tmp_path / "2", records, 10, "init/ckpt")
    assert again == checkpoint and Path(again).is_file() and len(inner.calls) == 2


def test_a_diverged_stage_is_reported_again_without_training(tmp_path):
    inner, records = ConfigTrainer(diverge=True), _write(tmp_path / "r", [[b"x"]])
    for _ in range(2):
        with pytest.raises(DivergedError, match="step 42"):
            _quiet(inner, tmp_path / "stages").train(tmp_path / "1", records, 10, "init/ckpt")
    assert len(inner.calls) == 1


def test_a_round_begun_in_place_resumes_there(tmp_path):
    inner, records = ConfigTrainer(), _write(tmp_path / "r", [[b"x"]])
    (tmp_path / "01" / "model").mkdir(parents=True)
    (tmp_path / "01" / "model" / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
    checkpoint = _quiet(inner, tmp_path / "stages").train(tmp_path / "01", records, 10,
                                                          "init/ckpt")
    assert checkpoint == str(tmp_path / "01" / "model" / "ckpt")
    assert not (tmp_path / "stages").exists()
