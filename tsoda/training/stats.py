"""Model size and cost of pipeline configs: parameters and FLOPs (``tsoda stats``).

FLOPs count the dense network (backbone, feature pyramid, box predictor) on one image at
the config's input size, with TensorFlow's profiler on a frozen graph; one multiply-add
counts as 2 FLOPs. Anchor decoding and NMS are left out (they depend on the scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from tsoda.config.experiment import build_experiment
from tsoda.config.pipeline import load_pipeline_config


@dataclass(frozen=True)
class ModelStats:
    config: str
    input_hw: tuple[int, int]
    levels: tuple[int, int]
    params: int
    flops: int


def count_flops(function, spec: tf.TensorSpec) -> int:
    """FLOPs of one call of ``function`` on a tensor of ``spec``."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2_as_graph,
    )

    concrete = tf.function(function).get_concrete_function(spec)
    frozen, _ = convert_variables_to_constants_v2_as_graph(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph,
                                            run_meta=tf.compat.v1.RunMetadata(), options=options)
    return int(profile.total_float_ops)


def model_stats(config_path: str | Path) -> ModelStats:
    """Builds the config's model and measures its parameters and FLOPs."""
    from tsoda.training.train import build_model_and_task

    experiment = build_experiment(load_pipeline_config(config_path), config_path)
    _, model = build_model_and_task(experiment)
    height, width = experiment.input_hw

    def dense(images):
        features = model.decoder(model.backbone(images, training=False), training=False)
        return model.head(features, training=False)

    flops = count_flops(dense, tf.TensorSpec([1, height, width, 3], tf.float32))
    parts = (model.backbone, model.decoder, model.head)  # built by the trace above
    params = sum(int(w.shape.num_elements()) for part in parts for w in part.weights)
    model_config = experiment.task.model
    return ModelStats(str(config_path), (height, width),
                      (model_config.min_level, model_config.max_level), params, flops)


def print_stats(config_paths: list[str]) -> list[ModelStats]:
    """Prints one table row per config; returns the rows."""
    rows = [model_stats(path) for path in config_paths]
    print(f"{'config':58s} {'input':>9s} {'levels':>6s} {'params':>11s} {'GFLOPs':>8s}")
    for row in rows:
        print(f"{row.config:58s} {row.input_hw[0]:>4d}x{row.input_hw[1]:<4d} "
              f"{row.levels[0]}-{row.levels[1]:<4d} {row.params:>11,d} {row.flops / 1e9:>8.3f}")
    return rows
