"""Training throughput: ``tsoda train`` against a bare loop of the same train step.

Both build the same task, model and optimizer from one pipeline.config (default: the demo
seed detector's, configs/efficientdet_lite0_slim.config) and train on TFRecords of
../shared/data/flames/train:

- tsoda: ``tsoda.training.train.train`` as the CLI runs it (input pipeline, progress bar, summaries
  every 10 steps, checkpoints); steps/s in steady state, from its ``steps_per_second``
  summaries after the warm-up steps (tracing excluded);
- bare (the limit): the same ``task.train_step`` in a tf.function over batches taken from the
  same input pipeline beforehand and held in memory; no summaries, no progress bar.

In one run, repeats interleaved. Prints steps/s (min / median) and the ratio; writes
bench/results/training.json.

Usage: python bench/bench_training.py [--config PATH] [--steps 60] [--warmup 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import tensorflow as tf  # noqa: E402
from common import FLAMES, ROOT, machine, write_results  # noqa: E402

from tsoda.config.experiment import build_experiment  # noqa: E402
from tsoda.config.pipeline import load_pipeline_config, to_text  # noqa: E402
from tsoda.data.tfrecords import write_tfrecords  # noqa: E402
from tsoda.training.train import build_model_and_task, train  # noqa: E402

SUMMARY_EVERY = 10


def flames_train_config(source: Path, folder: Path) -> Path:
    """Writes TFRecords of flames/train into ``folder`` and the config reading them, without
    warm start (weights do not change the cost); returns the config's path."""
    write_tfrecords(FLAMES / "train", FLAMES / "train", FLAMES / "label_map.pbtxt",
                    folder / "train.record", num_shards=4)
    records = str(folder / "train.record*")
    out = folder / "bench.config"
    pipeline = load_pipeline_config(source)
    pipeline.train_config.fine_tune_checkpoint = ""
    pipeline.train_input_reader.label_map_path = str(FLAMES / "label_map.pbtxt")
    del pipeline.train_input_reader.tf_record_input_reader.input_path[:]
    pipeline.train_input_reader.tf_record_input_reader.input_path.append(records)
    out.write_text(to_text(pipeline), encoding="utf-8")
    return out


def tsoda_rate(config: Path, model_dir: Path, warmup: int, steps: int) -> float:
    train(config, model_dir, warmup + steps, progress=True, summary_every=SUMMARY_EVERY)
    seconds = 0.0
    for path in sorted((model_dir / "train").glob("events.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "steps_per_second" and event.step > warmup:
                    seconds += SUMMARY_EVERY / float(tf.make_ndarray(value.tensor))
    return steps / seconds


def bare_rate(config: Path, warmup: int, steps: int) -> float:
    from official.core import config_definitions

    experiment = build_experiment(load_pipeline_config(config), config)
    task, model = build_model_and_task(experiment)
    optimizer = task.create_optimizer(experiment.optimization,
                                      config_definitions.RuntimeConfig())
    metrics = task.build_metrics(training=True)
    inputs = iter(task.build_inputs(experiment.task.train_data))
    batches = [next(inputs) for _ in range(warmup + steps)]
    step_fn = tf.function(lambda batch: task.train_step(batch, model, optimizer, metrics))
    for batch in batches[:warmup]:
        step_fn(batch)
    start = time.perf_counter()
    for batch in batches[warmup:]:
        logs = step_fn(batch)
    float(logs["total_loss"])  # wait for the last step
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path,
                        default=ROOT / "configs" / "efficientdet_lite0_slim.config")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rates = {"tsoda": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = flames_train_config(args.config, tmp)
        batch_size = load_pipeline_config(config).train_config.batch_size
        for repeat in range(args.repeats):
            rates["tsoda"].append(tsoda_rate(config, tmp / f"model{repeat}", args.warmup,
                                             args.steps))
            rates["bare"].append(bare_rate(config, args.warmup, args.steps))
    ratio = statistics.median(t / b for t, b in zip(rates["tsoda"], rates["bare"], strict=True))
    for name, values in rates.items():
        print(f"{name:6s} steps/s min {min(values):.3f}  median {statistics.median(values):.3f}")
    print(f"tsoda / bare: {ratio:.3f} (median of per-repeat ratios)")
    write_results("training", {
        "machine": machine(), "config": args.config.name, "steps": args.steps,
        "warmup": args.warmup, "batch_size": batch_size,
        "steps_per_second": {k: {"min": min(v), "median": statistics.median(v), "runs": v}
                             for k, v in rates.items()},
        "tsoda_over_bare": ratio})


if __name__ == "__main__":
    main()
