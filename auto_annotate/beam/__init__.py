"""Labelling on Apache Beam: ``python -m auto_annotate.beam`` runs what ``python -m
auto_annotate`` does as a Beam pipeline, on the local runner, Dataflow, Flink or Spark.

Apache Beam is an optional dependency (the ``beam`` extra); it is imported only when a
pipeline is built, and :func:`require_beam` turns its absence into one clear error.
"""

from __future__ import annotations

from auto_annotate.errors import AnnotateError

INSTALL_HINT = "needs apache-beam, which is not installed: pip install '.[beam]'"


def require_beam(what: str = "labelling") -> None:
    """Raises AnnotateError with the install command when Apache Beam is missing."""
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        raise AnnotateError(None, f"{what} on Apache Beam {INSTALL_HINT}") from None
