"""Command line of ``python -m auto_annotate``: parse flags, call the API, print a summary."""

from __future__ import annotations

import argparse

from tqdm.contrib.logging import logging_redirect_tqdm

from auto_annotate.console import run_command, setup_console
from auto_annotate.tta import views_argument

__all__ = ["add_model_path", "build_parser", "main"]


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_path(parser: argparse.ArgumentParser) -> None:
    """``--model_path`` and its former name ``--saved_model_path``: exactly one is required."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--model_path",
                       help="SavedModel folder (Object Detection API export contract) or "
                            ".tflite file (needs the litert extra; letterboxed input)")
    group.add_argument("--saved_model_path", help="the former name of --model_path")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m auto_annotate",
        description="Label a folder of images with a detection model (SavedModel or "
                    ".tflite), writing one LabelImg-ready Pascal VOC XML per image.")
    add_model_path(parser)
    parser.add_argument("--label_map_path", required=True, help="label_map.pbtxt")
    parser.add_argument("--imgs_path", required=True, help="folder of images to label")
    parser.add_argument("--xml_path", help="output folder for XML (default: the image folder)")
    parser.add_argument("--threshold", type=_threshold, default=0.5,
                        help="keep detections with score >= this, in [0, 1] (default 0.5)")
    parser.add_argument("--batch_size", type=_positive, default=1,
                        help="images per model call, for models with a dynamic batch (default 1)")
    parser.add_argument("--recursive", action="store_true", help="include sub-folders")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing XML (verified files are never replaced)")
    parser.add_argument("--write_empty", action="store_true",
                        help="write an XML without objects for images with no detection")
    parser.add_argument("--tta", type=views_argument, default=(),
                        help="test-time augmentation: label each image also as these views "
                             "and fuse (comma-separated: flip, tiles), e.g. --tta flip")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's own log lines and model details")
    return parser


def _annotate(args) -> int:
    from auto_annotate.api import AutoAnnotate  # after setup_console: TensorFlow is quiet

    job = AutoAnnotate(args.model_path or args.saved_model_path, args.label_map_path,
                       args.imgs_path, args.xml_path, threshold=args.threshold,
                       batch_size=args.batch_size, recursive=args.recursive,
                       overwrite=args.overwrite, write_empty=args.write_empty,
                       progress=not args.quiet, tta=args.tta)
    with logging_redirect_tqdm():
        summary = job.generate_annotations()
    print(summary.format())
    print(f"review: python -m auto_annotate.review --imgs_path {job.imgs_path} "
          f"--xml_path {job.xml_path or job.imgs_path}")
    return summary.exit_code


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit status (0 ok, 1 some image failed, 2 usage)."""
    args = build_parser().parse_args(argv)
    setup_console(args.verbose)  # before TensorFlow is imported
    return run_command(lambda: _annotate(args),
                       interrupted="finished labels are saved; run the same command again "
                                   "to continue")
