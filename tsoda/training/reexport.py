"""Re-exporting a SavedModel made by ``tsoda export`` that has no checkpoint (the bundled seed
detector) with today's export settings, and checking that its detections did not change.

The weights go SavedModel -> model built from the same pipeline.config
(:func:`tsoda.modeling.warm_start.restore_from_saved_model`, every shape checked) -> checkpoint, and
that checkpoint is exported as any trained one (``tsoda export``, any ``--format``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from auto_annotate.detections import Detections


def checkpoint_from_saved_model(pipeline_config_path: str | Path, saved_model: str | Path,
                                model_dir: str | Path) -> str:
    """Writes the SavedModel's weights as checkpoint ``model_dir/ckpt-0`` of a model built from
    ``pipeline_config_path``; ``tsoda export --model_dir model_dir`` then exports it.

    Raises:
        PipelineConfigError: the config cannot be used.
        TrainingError: the SavedModel was not made by tsoda export from this config.
    """
    from tsoda.config.experiment import build_experiment
    from tsoda.config.pipeline import load_pipeline_config
    from tsoda.modeling.warm_start import restore_from_saved_model
    from tsoda.training.train import build_model_and_task

    experiment = build_experiment(load_pipeline_config(pipeline_config_path),
                                  pipeline_config_path)
    model = build_model_and_task(experiment)[1]
    restore_from_saved_model(model, saved_model, modules="all")
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(model_dir),
                                         max_to_keep=1)
    return manager.save(checkpoint_number=0)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Detections of two models on the same images, side by side."""

    images: int
    detections: tuple[int, int]  # (first model, second model), all scores
    count_mismatches: int  # images whose detection counts differ
    class_mismatches: int  # detections whose class differs (images with equal counts)
    max_box_difference: float  # pixels, images with equal counts
    max_score_difference: float

    @property
    def identical(self) -> bool:
        return (self.count_mismatches == 0 and self.class_mismatches == 0
                and self.max_box_difference <= 1e-3 and self.max_score_difference <= 1e-6)

    def format(self) -> str:
        verdict = "identical" if self.identical else "DIFFERENT"
        return (f"{verdict}: {self.images} images, {self.detections[0]} vs "
                f"{self.detections[1]} detections, {self.count_mismatches} images with other "
                f"counts, {self.class_mismatches} other classes, max box difference "
                f"{self.max_box_difference:.2g} px, max score difference "
                f"{self.max_score_difference:.2g}")


def compare_detections(first: Sequence[Detections], second: Sequence[Detections]) -> Comparison:
    """Compares two models' detections on the same images, row by row (both sorted by score)."""
    counts = mismatched_classes = 0
    box_difference = score_difference = 0.0
    for a, b in zip(first, second, strict=True):
        if len(a) != len(b):
            counts += 1
            continue
        if len(a):
            mismatched_classes += int(np.sum(a.class_ids != b.class_ids))
            box_difference = max(box_difference, float(np.abs(a.boxes - b.boxes).max()))
            score_difference = max(score_difference, float(np.abs(a.scores - b.scores).max()))
    return Comparison(len(first), (sum(map(len, first)), sum(map(len, second))), counts,
                      mismatched_classes, box_difference, score_difference)


def compare_saved_models(first: str | Path, second: str | Path,
                         images: Sequence[np.ndarray]) -> Comparison:
    """Runs both SavedModels as auto_annotate does on uint8 RGB ``images`` and compares."""
    from auto_annotate.model import SavedModelDetector

    detectors = SavedModelDetector(first), SavedModelDetector(second)
    return compare_detections(*([detector.predict([image])[0] for image in images]
                                for detector in detectors))
