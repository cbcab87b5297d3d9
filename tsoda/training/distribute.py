"""Training on several devices or machines with TensorFlow's own strategies
(``tsoda train --strategy``).

- ``default``: no strategy, one device (what training always did).
- ``mirrored``: ``MirroredStrategy``, one replica per local GPU (one CPU replica on a
  machine without GPU).
- ``multi_worker``: ``MultiWorkerMirroredStrategy``; the cluster and this process's role
  come from the standard ``TF_CONFIG`` environment variable. Every worker runs the same
  command with the same model dir, which all of them must reach (a shared disk such as
  NFS; not ``gs://``: model dirs are local paths).

``train_config.batch_size`` stays the global batch: each replica takes its share. The
chief (task ``chief``, else worker 0) writes the checkpoints, summaries and resolved
configs into the model dir; every other worker writes its own into a temporary folder that
is removed at the end (TensorFlow's pattern: every worker must save, since saving can take
part in collective operations).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


@dataclass(frozen=True)
class Distribution:
    """The strategy a training runs under, whether this process is the chief, and where it
    writes (the model dir for the chief, a temporary folder for the other workers)."""

    name: str
    strategy: tf.distribute.Strategy
    chief: bool
    write_dir: Path

    @property
    def distributed(self) -> bool:
        return self.name != "default"


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy of a ``--strategy`` value. A multi-worker strategy must be made before
    any other TensorFlow operation runs in the process."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


@contextlib.contextmanager
def distribution(name: str, model_dir: Path) -> Iterator[Distribution]:
    """The strategy and this process's role; a non-chief's folder is removed on exit."""
    strategy = make_strategy(name)
    chief = is_chief(strategy)
    write_dir = model_dir if chief else Path(tempfile.mkdtemp(prefix="tsoda_worker_"))
    try:
        yield Distribution(name, strategy, chief, write_dir)
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def inputs(dist: Distribution, build: Callable) -> Iterator:
    """An iterator of training batches; ``build(input_context)`` makes the dataset (each
    worker's input pipeline reads its share of the files or examples)."""
    if not dist.distributed:
        return iter(build(None))
    return iter(dist.strategy.distribute_datasets_from_function(build))


def step_function(dist: Distribution, step: Callable) -> Callable:
    """``step(batch)`` compiled; under a strategy, run on every replica and its logs
    averaged over the replicas."""
    if not dist.distributed:
        return tf.function(step)

    def replicated(batch):
        logs = dist.strategy.run(step, args=(batch,))
        return {key: dist.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for key, value in logs.items()}
    return tf.function(replicated)
