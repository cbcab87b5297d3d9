"""``tsoda train --strategy``: two local workers with MultiWorkerMirroredStrategy finish,
only the chief writes into the model dir, its checkpoint restores, and the loss curve has
the shape of one worker's on the same tiny config."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import tensorflow as tf

from tests.tsoda_helpers import synthetic_voc, write_tiny_config
from tsoda.training.train import train

REPO = Path(__file__).resolve().parents[1]
STEPS, EVERY = 24, 2
WORKER_TIMEOUT = 900  # seconds for both workers together, on a busy 2-core machine


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from tsoda.data.tfrecords import write_tfrecords

    root = tmp_path_factory.mktemp("strategies")
    data = synthetic_voc(root / "data", count=8)
    label_map = root / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "flame" }\n')
    write_tfrecords(data, data, label_map, root / "train.record")
    return write_tiny_config(root / "pipeline.config", str(root / "train.record*"), label_map,
                             steps=STEPS)


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 (all held open until every one is chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def run_workers(config: Path, model_dir: Path, logs: Path) -> list[int]:
    """Starts two workers of one cluster, waits for both (bounded) and always stops them."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = []
    try:
        for index in range(2):
            env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2",
                   "TF_CONFIG": json.dumps({"cluster": cluster,
                                            "task": {"type": "worker", "index": index}})}
            with open(logs / f"worker{index}.log", "wb") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "tsoda", "train", "--strategy", "multi_worker",
                     "--pipeline_config_path", str(config), "--model_dir", str(model_dir),
                     "--summary_every", str(EVERY), "--quiet"],
                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + WORKER_TIMEOUT
        return [process.wait(timeout=max(1.0, deadline - time.monotonic()))
                for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def loss_curve(model_dir: Path, tag: str = "loss/total_loss") -> list[float]:
    """A loss summary (default: the running mean of the loss), in step order."""
    points = {}
    for path in (model_dir / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    points[event.step] = float(tf.make_ndarray(value.tensor))
    return [points[step] for step in sorted(points)]


@pytest.mark.slow
def test_two_local_workers_train_and_the_chief_checkpoint_restores(tiny, tmp_path):
    model_dir = tmp_path / "model"
    temp_before = set(Path(tempfile.gettempdir()).glob("tsoda_worker_*"))
    codes = run_workers(tiny, model_dir, tmp_path)
    logs = "\n".join((tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(2))
    assert codes == [0, 0], logs
    assert f"steps 0->{STEPS}" in (tmp_path / "worker1.log").read_text()
    # only the chief wrote: its checkpoint, configs and one summary file
    assert tf.train.latest_checkpoint(str(model_dir)) == str(model_dir / f"ckpt-{STEPS}")
    assert len(list((model_dir / "train").glob("events.out.tfevents.*"))) == 1
    assert set(Path(tempfile.gettempdir()).glob("tsoda_worker_*")) == temp_before
    resumed = train(tiny, model_dir, progress=False)  # restores, checking every object
    assert (resumed.first_step, resumed.last_step) == (STEPS, STEPS)

    single = train(tiny, tmp_path / "single", progress=False, summary_every=EVERY)
    assert single.last_step == STEPS
    steps_two, steps_one = loss_curve(model_dir, "loss/step"), loss_curve(tmp_path / "single",
                                                                           "loss/step")
    means_two, means_one = loss_curve(model_dir), loss_curve(tmp_path / "single")
    assert len(steps_two) == len(steps_one) == len(means_two) == STEPS // EVERY
    # The same shape (measured: the step loss falls by 46% with two workers, 53% with one;
    # the running means stay within 4% of each other): the step loss falls by at least a
    # fifth (mean of the last 3 points against the first 3) in both, by shares within half
    # of one worker's, and the running means stay within 15% of each other at every point.
    drops = [1 - sum(curve[-3:]) / sum(curve[:3]) for curve in (steps_two, steps_one)]
    assert min(drops) > 0.2 and abs(drops[0] - drops[1]) < 0.5 * drops[1], (drops, steps_two,
                                                                           steps_one)
    assert all(abs(a - b) < 0.15 * b for a, b in zip(means_two, means_one, strict=True)), \
        (means_two, means_one)


@pytest.mark.slow
def test_mirrored_strategy_trains_on_one_cpu_replica(tiny, tmp_path):
    result = train(tiny, tmp_path / "model", num_train_steps=2, progress=False,
                   strategy="mirrored")
    assert result.last_step == 2 and result.final_loss == result.final_loss  # not NaN
    assert tf.train.latest_checkpoint(str(tmp_path / "model")) == result.checkpoint


def test_a_pseudo_stream_with_another_strategy_is_refused_before_any_work(tiny, tmp_path):
    from tsoda.errors import TrainingError
    from tsoda.modeling.task import PseudoStream

    with pytest.raises(TrainingError, match="default strategy only"):
        train(tiny, tmp_path / "model", pseudo=PseudoStream("x*"), strategy="mirrored")
    assert not (tmp_path / "model").exists()
