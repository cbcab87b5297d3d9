"""The real parts the TSODA loop is built from: Model Garden training and export driven by
the user's pipeline.config, and detectors from auto_annotate (SavedModel or .tflite)."""

from __future__ import annotations

import copy
from pathlib import Path

from tsoda.config.pipeline import (
    LoadedConfig,
    check_label_map,
    load,
    load_pipeline_config,
    to_text,
)


class ModelGardenTrainer:
    """Trains a round with ``tsoda train`` semantics from a per-round pipeline.config.

    Each round's config is the user's with: the round's TFRecords and label map as input,
    ``num_steps`` and the cosine schedule's ``total_steps`` set to the round's steps, and
    ``fine_tune_checkpoint`` set to the warm start (type detection for a previous round).
    The user's config is parsed once (``config``: parsed, or its path); rounds train from
    the round's message, and the written round config is what export reads.
    """

    def __init__(self, config: str | Path | LoadedConfig, label_map_path: str | Path,
                 progress: bool = True) -> None:
        config = load(config)
        self.pipeline = config.message
        check_label_map(self.pipeline.model.ssd.num_classes, label_map_path, config.source)
        self.source = Path(config.source)
        self.label_map_path = str(Path(label_map_path).resolve())
        self.progress = progress
        train = self.pipeline.train_config
        self.initial_checkpoint = train.fine_tune_checkpoint or None
        self._initial_type = train.fine_tune_checkpoint_type or "detection"

    def fingerprint(self) -> str:
        """The config as parsed and the label map: what identifies this trainer's models."""
        import hashlib

        text = to_text(self.pipeline) + Path(self.label_map_path).read_text(encoding="utf-8")
        return hashlib.sha256(text.encode()).hexdigest()

    def round_config(self, round_dir: Path, records: str, steps: int,
                     warm_start: str | None) -> LoadedConfig:
        """Writes the round's pipeline.config; returns it with its path."""
        pipeline = copy.deepcopy(self.pipeline)
        train = pipeline.train_config
        train.num_steps = steps
        rate = _learning_rate(train.optimizer)
        if rate is not None and rate.HasField("cosine_decay_learning_rate"):
            schedule = rate.cosine_decay_learning_rate
            schedule.total_steps = steps
            schedule.warmup_steps = min(schedule.warmup_steps, steps // 2)
        train.fine_tune_checkpoint = warm_start or ""
        train.fine_tune_checkpoint_type = (self._initial_type
                                           if warm_start == self.initial_checkpoint
                                           else "detection") if warm_start else ""
        reader = pipeline.train_input_reader
        reader.label_map_path = self.label_map_path
        del reader.tf_record_input_reader.input_path[:]
        reader.tf_record_input_reader.input_path.append(records)
        path = Path(round_dir) / "pipeline.config"
        path.write_text(to_text(pipeline), encoding="utf-8")
        return LoadedConfig(pipeline, path)

    def train(self, round_dir: Path, records: str, steps: int, warm_start: str | None,
              pseudo=None) -> str:
        from tsoda.training.train import train

        config = self.round_config(round_dir, records, steps, warm_start)
        return train(config, Path(round_dir) / "model", steps, progress=self.progress,
                     pseudo=pseudo).checkpoint

    def export(self, round_dir: Path, checkpoint: str) -> Path:
        from tsoda.training.export import export

        # the config that trained the checkpoint; the user's was warned about at the start
        path = Path(round_dir) / "pipeline.config"
        config = LoadedConfig(load_pipeline_config(path, warn=False), path)
        return export(config, Path(round_dir) / "model", Path(round_dir) / "export",
                      checkpoint=checkpoint)


def _learning_rate(optimizer):
    kind = optimizer.WhichOneof("optimizer")
    return getattr(optimizer, kind).learning_rate if kind else None


def model_detector(batch_size: int = 8):
    """A detector factory: model path (SavedModel folder or ``.tflite`` file) -> an
    auto_annotate Detector, through ``auto_annotate.load_detector``."""
    from auto_annotate import load_detector

    return lambda path: load_detector(path, batch_size)
