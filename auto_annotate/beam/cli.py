"""Command line of ``python -m auto_annotate.beam``: ``python -m auto_annotate``'s flags,
plus Apache Beam's pipeline options (``--runner``...), which are passed to Beam."""

from __future__ import annotations

import logging
import sys

from auto_annotate.beam import refuse_unknown_flags, require_beam
from auto_annotate.cli import build_parser as local_parser
from auto_annotate.console import run_command, setup_console
from auto_annotate.errors import AnnotateError, error_line

__all__ = ["DESCRIPTION", "build_parser", "main"]

DESCRIPTION = ("Label a folder of images as python -m auto_annotate does, as an Apache Beam "
               "pipeline. Flags the labelling does not know are Beam's pipeline options, e.g. "
               "--runner DirectRunner --direct_num_workers 2 --direct_running_mode "
               "multi_processing, or --runner DataflowRunner --project P --region R "
               "--temp_location gs://... (see README).")


def _quiet_beam() -> None:
    """Beam's own notes (optional cloud clients missing...) only with --verbose; it logs
    some through the root logger, so they are filtered by the file they come from."""
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: record.levelno >= logging.ERROR
                          or "apache_beam" not in record.pathname)


def build_parser():
    parser = local_parser()
    parser.prog, parser.description = "python -m auto_annotate.beam", DESCRIPTION
    return parser


def _label(args, beam_args: list[str]) -> int:
    require_beam()
    refuse_unknown_flags(beam_args)
    from auto_annotate.beam.run import prepare, run

    job = prepare(args)
    try:
        summary = run(job, beam_args)
    except AnnotateError:
        raise
    except Exception as error:  # the runner's own failure: one line, --verbose logs it all
        logging.getLogger(__name__).debug("pipeline failure", exc_info=True)
        print(f"error: the pipeline failed: {error_line(error)}", file=sys.stderr)
        return 1
    print(summary.format())
    print(f"review: python -m auto_annotate.review --imgs_path {job.imgs_root} "
          f"--xml_path {job.xml_root}")
    return summary.exit_code


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit status (0 ok, 1 some image failed or the
    pipeline failed, 2 usage)."""
    args, beam_args = build_parser().parse_known_args(argv)
    setup_console(args.verbose)
    if not args.verbose:
        _quiet_beam()
    return run_command(lambda: _label(args, beam_args))
