"""Labelling on Apache Beam: ``python -m auto_annotate.beam`` runs what ``python -m
auto_annotate`` does as a Beam pipeline, on the local runner, Dataflow, Flink or Spark.

Apache Beam is an optional dependency (the ``beam`` extra); it is imported only when a
pipeline is built, and :func:`require_beam` turns its absence into one clear error.
"""

from __future__ import annotations

from auto_annotate.errors import AnnotateError

__all__ = ["INSTALL_HINT", "refuse_unknown_flags", "require_beam"]

INSTALL_HINT = "needs apache-beam, which is not installed: pip install '.[beam]'"


def require_beam(what: str = "labelling") -> None:
    """Raises AnnotateError with the install command when Apache Beam is missing."""
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        raise AnnotateError(None, f"{what} on Apache Beam {INSTALL_HINT}") from None


def refuse_unknown_flags(flags: list[str]) -> None:
    """Raises AnnotateError naming the flags that are neither ours nor a Beam pipeline option
    (Beam itself would only log and drop them, so a typo such as ``--threshhold`` would pass
    unnoticed)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parsers = []  # Beam's own parser, holding every pipeline option it knows
    PipelineOptions(flags).get_all_options(add_extra_args_fn=parsers.append)
    _, unknown = parsers[0].parse_known_args(flags)
    unknown = [flag.split("=", 1)[0] for flag in unknown if flag.startswith("-")]
    if unknown:
        raise AnnotateError(None, f"unknown flag {', '.join(unknown)}: neither a flag of this "
                                  "command nor an Apache Beam pipeline option")
