"""Errors of the training side; each names its file and the problem in one line."""

from __future__ import annotations

from auto_annotate.errors import AnnotateError


class PipelineConfigError(AnnotateError):
    """A pipeline.config that cannot be parsed, holds an unsupported field, or is invalid."""


class TrainingError(AnnotateError):
    """Training, export or evaluation cannot proceed (missing checkpoint, empty data...)."""


class DivergedError(TrainingError):
    """Training diverged: the loss became NaN at ``step``."""

    def __init__(self, path, step: int) -> None:
        super().__init__(path, f"loss is NaN at step {step}; the last checkpoint is kept")
        self.step = step


class JournalError(TrainingError):
    """The TSODA journal cannot be used: not a SQLite database, or another schema version."""
