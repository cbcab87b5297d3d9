"""Typed errors. Each names the file it is about and what is wrong, in one line."""

from __future__ import annotations

from pathlib import Path


class AnnotateError(Exception):
    """Base class: an error about one input file.

    Attributes:
        path: the file the error is about (may be None for errors about no file).
        problem: what is wrong, one line.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class LabelMapError(AnnotateError):
    """The label map cannot be read or is invalid."""


class VocError(AnnotateError):
    """A Pascal VOC XML file is malformed."""


class ImageError(AnnotateError):
    """An image cannot be decoded."""


class ModelError(AnnotateError):
    """A SavedModel cannot be loaded or its signature cannot be used."""
