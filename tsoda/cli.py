"""``python -m tsoda``: train, export, evaluate (and model stats). Parses flags, calls the
library, turns errors into one line and a non-zero exit."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from auto_annotate.errors import AnnotateError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tsoda", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a detector from a pipeline.config")
    train.add_argument("--pipeline_config_path", required=True)
    train.add_argument("--model_dir", required=True)
    train.add_argument("--num_train_steps", type=_positive,
                       help="train until this step (default: train_config.num_steps)")
    train.add_argument("--checkpoint_every", type=_positive, default=500)
    export = commands.add_parser("export", help="export the latest checkpoint as a SavedModel")
    export.add_argument("--pipeline_config_path", required=True)
    export.add_argument("--model_dir", required=True)
    export.add_argument("--output_dir", required=True)
    evaluate = commands.add_parser("evaluate", help="COCO metrics of a SavedModel on VOC data")
    evaluate.add_argument("--saved_model_path", required=True)
    evaluate.add_argument("--label_map_path", required=True)
    evaluate.add_argument("--data_dir", required=True, help="folder of images and VOC XML")
    evaluate.add_argument("--output_path", help="metrics JSON (default: beside the model)")
    evaluate.add_argument("--batch_size", type=_positive, default=8)
    stats = commands.add_parser("stats", help="parameters and FLOPs of configs' models")
    stats.add_argument("pipeline_config_paths", nargs="+")
    for sub in (train, export, evaluate, stats):
        sub.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    return parser


def _run(args) -> int:
    if args.command == "train":
        from tsoda.train import train

        result = train(args.pipeline_config_path, args.model_dir, args.num_train_steps,
                       progress=not args.quiet, checkpoint_every=args.checkpoint_every)
        print(f"checkpoint: {result.checkpoint} (steps {result.first_step}->{result.last_step}"
              f", {result.steps_per_second:.2f} steps/s, loss {result.final_loss})")
    elif args.command == "export":
        from tsoda.export import export

        print(f"saved model: {export(args.pipeline_config_path, args.model_dir, args.output_dir)}")
    elif args.command == "evaluate":
        from tsoda.evaluate import evaluate

        print(evaluate(args.saved_model_path, args.label_map_path, args.data_dir,
                       args.output_path, args.batch_size).format())
    else:
        from tsoda.stats import print_stats

        print_stats(args.pipeline_config_paths)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s: %(message)s")
    for noisy in ("absl", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return _run(args)
    except (AnnotateError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130
