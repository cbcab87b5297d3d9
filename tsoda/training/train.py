"""``tsoda train``: trains a RetinaNet from a pipeline.config with Model Garden's task.

Checkpoints (``ckpt-N``) and TensorBoard summaries (``train/``) go into the model dir;
the resolved configs are written there before the first step. Training resumes from the
latest checkpoint in the model dir, else warm-starts from ``fine_tune_checkpoint`` (a
checkpoint, or a SavedModel folder made by ``tsoda export``). The final checkpoint is written
before anything else can fail (no evaluation runs inside).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf
import yaml
from tqdm import tqdm

from tsoda.config.experiment import Experiment, build_experiment
from tsoda.config.pipeline import LoadedConfig, load, require_label_map, to_text
from tsoda.errors import DivergedError, TrainingError
from tsoda.modeling.warm_start import is_saved_model, restore_from_saved_model
from tsoda.training import distribute
from tsoda.training.distribute import Distribution

LOG = logging.getLogger(__name__)
RESOLVED_PIPELINE = "pipeline.config"
RESOLVED_MODEL_GARDEN = "model_garden_config.yaml"


@dataclass(frozen=True)
class TrainResult:
    """What a call to :func:`train` did."""

    checkpoint: str
    first_step: int
    last_step: int
    seconds: float
    final_loss: float | None

    @property
    def steps_per_second(self) -> float:
        done = self.last_step - self.first_step
        return done / self.seconds if self.seconds > 0 and done > 0 else 0.0


def write_resolved_configs(model_dir: Path, pipeline, experiment: Experiment) -> None:
    """The pipeline.config as parsed and the Model Garden config it maps to."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / RESOLVED_PIPELINE).write_text(to_text(pipeline), encoding="utf-8")
    resolved = {"task": experiment.task.as_dict(),
                "optimization": experiment.optimization.as_dict(),
                "batch_size": experiment.batch_size, "num_steps": experiment.num_steps}
    (model_dir / RESOLVED_MODEL_GARDEN).write_text(yaml.safe_dump(resolved), encoding="utf-8")


def build_model_and_task(experiment: Experiment):
    """(task, model) from an experiment; importing tsoda.modeling.bifpn registered our decoder.

    The task is Model Garden's RetinaNet task with ignore regions (difficult VOC objects) in
    its training input, and an optional pseudo-label stream: tsoda/modeling/task.py.
    """
    from tsoda.modeling.task import TsodaRetinaNetTask

    task = TsodaRetinaNetTask(experiment.task)
    return task, task.build_model()


def _restore(checkpoint, latest: str | None, task, model) -> None:
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        LOG.info("resumed from %s", latest)
    elif task.task_config.init_checkpoint:
        source = task.task_config.init_checkpoint
        if not (tf.io.gfile.exists(source) or tf.io.gfile.exists(source + ".index")):
            raise TrainingError(source, "fine_tune_checkpoint not found")
        if is_saved_model(source):
            restore_from_saved_model(model, source, task.task_config.init_checkpoint_modules)
        else:
            task.initialize(model)
        LOG.info("warm-started %s from %s", task.task_config.init_checkpoint_modules, source)


def _check_records(paths: str, what: str) -> None:
    files = [f for p in paths.split(",") if p for f in tf.io.gfile.glob(p)]
    if not files:
        raise TrainingError(paths or None, f"no training TFRecords match {what}")
    if not any(True for _ in tf.data.TFRecordDataset(files).take(1)):
        raise TrainingError(paths, "the training TFRecords hold no example; regenerate them "
                                   "from labelled images")


def _inputs(task, experiment: Experiment, dist: Distribution, pseudo=None):
    data = experiment.task.train_data
    _check_records(data.input_path, "train_input_reader.tf_record_input_reader.input_path")
    if pseudo is None:
        return distribute.inputs(dist, lambda context: task.build_inputs(data, context))
    _check_records(pseudo.input_path, "the pseudo-label stream's input path")
    return iter(task.build_streams(data, pseudo))


def _write_summaries(logs: dict, optimizer, step: int, rate: float) -> float:
    """Summaries: the step's loss (``loss/step``), Model Garden's running means of the
    losses since the run started, the learning rate and the speed."""
    loss = float(logs["loss"])
    tf.summary.scalar("loss/step", loss, step=step)
    for key in ("total_loss", "cls_loss", "box_loss", "model_loss"):
        if key in logs:
            tf.summary.scalar(f"loss/{key}", float(logs[key]), step=step)
    schedule = optimizer.learning_rate
    learning_rate = schedule(optimizer.iterations) if callable(schedule) else schedule
    tf.summary.scalar("learning_rate", float(tf.convert_to_tensor(learning_rate)), step=step)
    tf.summary.scalar("steps_per_second", rate, step=step)
    return loss


def _swap_in_averages(optimizer, model) -> None:
    """Swaps the model's weights with the EMA optimizer's averages (twice: back again). The
    EMA's own swap_weights needs a distribution strategy; training runs without one."""
    for weight in model.trainable_variables:
        average = optimizer.get_slot(weight, "average")
        raw = tf.identity(weight)
        weight.assign(average)
        average.assign(raw)


def _start_averages(optimizer, model, averages_in_model: tf.Variable) -> None:
    """After the restore: creates the EMA's averages (restored from the checkpoint as they
    are created, if it has them) and, when resuming after a finished run, puts the trained
    weights back into the model."""
    optimizer.shadow_copy(model)
    if bool(averages_in_model.numpy()):
        _swap_in_averages(optimizer, model)
        averages_in_model.assign(False)


def _run_steps(step_fn, batches, span: tuple[int, int], optimizer, manager, model_dir: Path,
               every: tuple[bool, int, int]) -> float | None:
    """Steps ``span`` (first, last], with a progress bar, summaries and checkpoints (not the
    last step's); returns the last logged loss. Raises DivergedError on a NaN loss."""
    (first, steps), (progress, checkpoint_every, summary_every) = span, every
    loss = None
    writer = tf.summary.create_file_writer(str(model_dir / "train"))
    with writer.as_default(), tqdm(total=steps, initial=first, unit="step", desc="training",
                                   disable=not progress) as bar:
        window = (time.perf_counter(), first)
        for step in range(first + 1, steps + 1):
            logs = step_fn(next(batches))
            bar.update(1)
            if step % summary_every == 0 or step == steps:
                rate = (step - window[1]) / max(time.perf_counter() - window[0], 1e-9)
                loss = _write_summaries(logs, optimizer, step, rate)
                window = (time.perf_counter(), step)
                bar.set_postfix(loss=f"{loss:.3f}", steps_per_s=f"{rate:.2f}")
                if loss != loss:  # NaN
                    raise DivergedError(model_dir, step)
            if step % checkpoint_every == 0 and step < steps:
                manager.save(checkpoint_number=step)
    return loss


def _build(experiment: Experiment, dist: Distribution):
    """(task, model, optimizer, checkpoint, its manager in the process's write dir, the
    EMA flag variables), created under the strategy's scope."""
    from official.core import config_definitions

    with dist.strategy.scope():
        task, model = build_model_and_task(experiment)
        optimizer = task.create_optimizer(experiment.optimization,
                                          config_definitions.RuntimeConfig())
        # with EMA, the last checkpoint of a run holds the averages as the model's weights
        swapped = {"averages_in_model": tf.Variable(False)} \
            if hasattr(optimizer, "shadow_copy") else {}  # Model Garden's EMA optimizer
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, **swapped,
                                         **model.checkpoint_items)
    manager = tf.train.CheckpointManager(checkpoint, str(dist.write_dir), max_to_keep=3,
                                         step_counter=optimizer.iterations)
    return task, model, optimizer, checkpoint, manager, swapped


def _experiment(config: LoadedConfig, num_train_steps: int | None, pseudo, strategy: str):
    require_label_map(config.message, config.source)
    experiment = build_experiment(config.message, config.source)
    steps = num_train_steps or experiment.num_steps
    if steps < 1:
        raise TrainingError(config.source, "no steps: set train_config.num_steps or "
                                           "--num_train_steps")
    if pseudo is not None and strategy != "default":
        raise TrainingError(config.source, "a pseudo-label stream trains with the default "
                                           "strategy only")
    return experiment, steps


def train(config: str | Path | LoadedConfig, model_dir: str | Path,
          num_train_steps: int | None = None, progress: bool = True,
          checkpoint_every: int = 500, summary_every: int = 20,
          pseudo=None, strategy: str = "default") -> TrainResult:
    """Trains until step ``num_train_steps`` (default: train_config.num_steps).

    ``config`` is the pipeline.config: parsed (``tsoda.config.pipeline.load``, with any
    overrides) or its path. Its resolved text is written into ``model_dir``.

    ``pseudo`` (a tsoda.modeling.task.PseudoStream) makes part of every batch pseudo-labelled images
    from their own TFRecords, with their own weights and augmentation. ``strategy``:
    "default", "mirrored" or "multi_worker" (reads ``TF_CONFIG``); see tsoda/training/distribute.py.

    Raises:
        PipelineConfigError: the config cannot be used (e.g. no label map, or one with
            more classes than num_classes).
        TrainingError: no training data, a missing warm-start checkpoint, or a NaN loss.
    """
    config = load(config)
    experiment, steps = _experiment(config, num_train_steps, pseudo, strategy)
    model_dir = Path(model_dir)
    with distribute.distribution(strategy, model_dir) as dist:  # before any other TF op
        if dist.chief:
            write_resolved_configs(model_dir, config.message, experiment)
        return _train(experiment, dist, model_dir, steps, pseudo,
                      (progress and dist.chief, checkpoint_every, summary_every))


def _train(experiment: Experiment, dist: Distribution, model_dir: Path, steps: int, pseudo,
           every: tuple[bool, int, int]) -> TrainResult:
    task, model, optimizer, checkpoint, manager, swapped = _build(experiment, dist)
    _restore(checkpoint, tf.train.latest_checkpoint(str(model_dir)), task, model)
    if swapped:
        with dist.strategy.scope():
            _start_averages(optimizer, model, swapped["averages_in_model"])
    first = int(optimizer.iterations.numpy())
    if first >= steps:
        LOG.info("%s is already at step %d of %d", model_dir, first, steps)
        return TrainResult(tf.train.latest_checkpoint(str(model_dir)), first, first, 0.0, None)
    batches = _inputs(task, experiment, dist, pseudo)
    with dist.strategy.scope():
        metrics = task.build_metrics(training=True)
    step_fn = distribute.step_function(
        dist, lambda batch: task.train_step(batch, model, optimizer, metrics))
    start = time.perf_counter()
    loss = _run_steps(step_fn, batches, (first, steps), optimizer, manager, dist.write_dir,
                      every)
    seconds = time.perf_counter() - start
    if swapped:  # the final checkpoint holds the averaged weights as the model's
        _swap_in_averages(optimizer, model)
        swapped["averages_in_model"].assign(True)
    path = manager.save(checkpoint_number=steps)
    return TrainResult(path if dist.chief else str(model_dir / Path(path).name), first, steps,
                       seconds, loss)
