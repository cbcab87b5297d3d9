"""Typed errors. Each names the file it is about and what is wrong, in one line."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["AnnotateError", "ImageError", "LabelMapError", "ModelError", "VocError", "error_line"]

_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "File ")


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
    """A model (SavedModel folder or .tflite file) cannot be loaded or used."""


def error_line(error: BaseException) -> str:
    """One line saying what went wrong in ``error``, for messages about a failed call.

    TensorFlow's messages start with "Graph execution error:" and where the failing node
    was defined; the cause is the line before the ``[[{{node ...}}]]`` marker.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    marker = next((i for i, line in enumerate(lines) if line.startswith("[[")), len(lines))
    causes = [line for line in lines[:marker] if not line.startswith(_TF_NOISE)]
    cause = causes[-1] if causes else (lines[0] if lines else "")
    cause = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", cause)  # TF's wrapper prefix
    return f"{type(error).__name__}: {cause}" if cause else type(error).__name__
