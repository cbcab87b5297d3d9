"""``python -m tsoda`` (or ``tsoda``): train, export, evaluate, run the loop (TSODA),
simulate it on hidden labels, the demo, model stats. Parses flags, calls the library; errors
become one line and a non-zero exit (:func:`auto_annotate.console.run_command`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from auto_annotate.console import run_command, setup_console
from auto_annotate.tta import views_argument
from tsoda.simulation import BASELINES


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _baselines(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in BASELINES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"must be hand_only, all_labels or both, comma-separated, got {text!r}")
    return names


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be integers separated by commas, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"repeats a seed: {text!r}")
    return seeds


def _add_loop_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=_fraction,
                        help="accept detections with score >= this (default: chosen each "
                             "round: the lowest score whose precision on the hand test "
                             "split reaches --target_precision with 90%% confidence; none "
                             "if no score does)")
    parser.add_argument("--uncertain_threshold", type=_fraction,
                        help="detections in [this, threshold) are uncertain (default: "
                             "chosen each round: the score reaching --target_recall)")
    parser.add_argument("--target_precision", type=_fraction, default=0.9)
    parser.add_argument("--target_recall", type=_fraction, default=0.9)
    parser.add_argument("--min_holdout_boxes", type=int, default=10,
                        help="fewer hand test boxes: thresholds from the count prior")
    parser.add_argument("--tta", type=views_argument, default=(),
                        help="label with test-time augmentation: these views fused with "
                             "the original (comma-separated: flip, tiles)")
    parser.add_argument("--pseudo_share", type=_share, default=0.0,
                        help="accepted labels as their own stream: this share of every batch "
                             "(default 0: hand and accepted labels mixed in one stream)")
    parser.add_argument("--pseudo_weight", type=float, default=1.0,
                        help="loss weight of the accepted-label stream (default 1)")
    parser.add_argument("--pseudo_background", type=float, default=1.0,
                        help="extra weight of its background anchors (default 1)")
    parser.add_argument("--no_pseudo_box_loss", dest="pseudo_box_loss", action="store_false",
                        help="do not regress the boxes of accepted labels")
    parser.add_argument("--strong_augment", action="store_true",
                        help="RandAugment (box-aware, no colour inversion) on accepted labels")
    parser.add_argument("--no_ignore_regions", dest="ignore_regions", action="store_false",
                        help="hold back images with uncertain detections instead of writing "
                             "them as ignore regions (difficult objects)")
    parser.add_argument("--initial_steps", type=_positive, default=2500)
    parser.add_argument("--step_increment", type=int, default=1500)
    parser.add_argument("--max_steps", type=_positive, default=8500)
    parser.add_argument("--max_rounds", type=_positive)
    parser.add_argument("--test_fraction", type=_fraction, default=0.2)
    parser.add_argument("--seed", type=int, default=0)


def _add_train_flags(train: argparse.ArgumentParser) -> None:
    train.add_argument("--pipeline_config_path", required=True)
    train.add_argument("--model_dir", required=True)
    train.add_argument("--num_train_steps", type=_positive,
                       help="train until this step (default: train_config.num_steps)")
    train.add_argument("--checkpoint_every", type=_positive, default=500)
    train.add_argument("--summary_every", type=_positive, default=20,
                       help="steps between TensorBoard loss summaries (default 20)")
    train.add_argument("--strategy", choices=("default", "mirrored", "multi_worker"),
                       default="default",
                       help="default: one device; mirrored: every local GPU; multi_worker: "
                            "several machines, from the TF_CONFIG environment variable (every "
                            "worker runs this command with the same --model_dir, which all "
                            "must reach; only the chief writes there)")
    train.add_argument("--set", action="append", default=[], dest="overrides",
                       metavar="FIELD=VALUE",
                       help="override a field of the config by its dotted path, e.g. "
                            "train_config.num_steps=600 (repeatable; values as in the file, "
                            "strings without quotes); MODEL_DIR/pipeline.config shows the result")


def _add_export_flags(export: argparse.ArgumentParser) -> None:
    export.add_argument("--pipeline_config_path", required=True)
    export.add_argument("--model_dir", required=True)
    export.add_argument("--output_dir", required=True)
    export.add_argument("--nms_version", choices=("batched", "v2", "v1"), default="batched",
                        help="NMS in the exported graph (default batched: Model Garden's v2 "
                             "detections, about 4x faster on CPU); SavedModel only")
    export.add_argument("--format", choices=("saved_model", "tflite"), default="saved_model",
                        help="OUTPUT_DIR/saved_model (default) or OUTPUT_DIR/model.tflite")
    export.add_argument("--quantize", choices=("none", "fp16", "int8"),
                        help="TFLite only: float32 (default), float16 weights, or int8 "
                             "calibrated on the config's training TFRecords")


def _add_evaluate_flags(evaluate: argparse.ArgumentParser) -> None:
    model = evaluate.add_mutually_exclusive_group(required=True)
    model.add_argument("--model_path", help="SavedModel folder or .tflite file")
    model.add_argument("--saved_model_path", help="the former name of --model_path")
    evaluate.add_argument("--label_map_path", required=True)
    evaluate.add_argument("--data_dir", required=True, help="folder of images and VOC XML")
    evaluate.add_argument("--output_path", help="metrics JSON (default: beside the model)")
    evaluate.add_argument("--batch_size", type=_positive, default=8)


def _add_run_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument("--pipeline_config_path", required=True)
    run.add_argument("--labeled_dir", required=True, help="hand-labelled VOC folder (read only)")
    run.add_argument("--unlabeled_dir", required=True, help="images to label (read only)")
    run.add_argument("--work_dir", required=True, help="all outputs, journal and labels")
    run.add_argument("--label_map_path", help="default: the config's train_input_reader's")
    _add_loop_flags(run)


def _add_simulate_flags(simulate: argparse.ArgumentParser) -> None:
    simulate.add_argument("--pipeline_config_path", required=True)
    simulate.add_argument("--dataset_dir", required=True, help="fully labelled VOC folder")
    simulate.add_argument("--labeled_fraction", type=_fraction, required=True)
    simulate.add_argument("--work_dir", required=True)
    simulate.add_argument("--test_dir", help="VOC folder to evaluate every model on")
    simulate.add_argument("--label_map_path", help="default: the config's")
    simulate.add_argument("--seeds", type=_seeds, default=(0,),
                          help="repeat the whole comparison per seed, e.g. 0,1,2 (default 0)")
    simulate.add_argument("--baselines", type=_baselines, default=BASELINES,
                          help="which baselines to train: hand_only, all_labels or both, "
                               "comma-separated (default both; each costs a training; "
                               "person_alone comes with --review_budget)")
    simulate.add_argument("--review_budget", type=int, default=0,
                          help="a simulated person verifies the first K images of each "
                               "round's review queue (default 0)")
    _add_loop_flags(simulate)


def _add_demo_flags(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--work_dir", default="tsoda_demo", help="all outputs (default: tsoda_demo)")
    demo.add_argument("--rounds", type=_positive, default=2)
    demo.add_argument("--initial_steps", type=_positive, default=60)
    demo.add_argument("--step_increment", type=int, default=60)


def _add_stats_flags(stats: argparse.ArgumentParser) -> None:
    stats.add_argument("pipeline_config_paths", nargs="+")


COMMANDS = {  # name: (help, flags)
    "train": ("train a detector from a pipeline.config", _add_train_flags),
    "export": ("export the latest checkpoint as a SavedModel or a TFLite model",
               _add_export_flags),
    "evaluate": ("COCO metrics of a model (SavedModel or .tflite) on VOC data",
                 _add_evaluate_flags),
    "run": ("the semi-supervised loop (TSODA)", _add_run_flags),
    "simulate": ("the loop on hidden labels, with baselines", _add_simulate_flags),
    "demo": ("auto_annotate + a short TSODA run on the bundled flame photos", _add_demo_flags),
    "stats": ("parameters and FLOPs of configs' models", _add_stats_flags),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsoda", description="Train, export and evaluate detectors on TF Model Garden, "
        "run the semi-supervised loop (TSODA), simulate it on hidden labels, the demo, "
        "model stats. Also runs as python -m tsoda.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_flags) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        add_flags(sub)
        sub.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
        sub.add_argument("--verbose", action="store_true",
                         help="also show TensorFlow's own log lines and warnings")
    return parser


def _run(args) -> int:
    if args.command == "train":
        from tsoda.config.pipeline import load
        from tsoda.training.train import train

        config = load(args.pipeline_config_path, args.overrides)
        result = train(config, args.model_dir, args.num_train_steps,
                       progress=not args.quiet, checkpoint_every=args.checkpoint_every,
                       summary_every=args.summary_every, strategy=args.strategy)
        print(f"checkpoint: {result.checkpoint} (steps {result.first_step}->{result.last_step}"
              f", {result.steps_per_second:.2f} steps/s, loss {result.final_loss})")
    elif args.command == "export":
        _export(args)
    elif args.command == "evaluate":
        from tsoda.training.evaluate import evaluate

        metrics = evaluate(args.model_path or args.saved_model_path, args.label_map_path,
                           args.data_dir, args.output_path, args.batch_size)
        print(metrics.format())
        return 1 if metrics.skipped else 0  # scored on fewer images than asked
    elif args.command == "run":
        _run_loop(args)
    elif args.command == "simulate":
        _simulate(args)
    elif args.command == "demo":
        from tsoda.demo import DemoSettings, run_demo

        run_demo(DemoSettings(Path(args.work_dir), initial_steps=args.initial_steps,
                              step_increment=args.step_increment, rounds=args.rounds,
                              progress=not args.quiet))
    else:
        from tsoda.training.stats import print_stats

        print_stats(args.pipeline_config_paths)
    return 0


def _export(args) -> None:
    from tsoda.config.pipeline import load

    if args.quantize is not None and args.format != "tflite":
        raise ValueError("--quantize applies to --format tflite only")
    config = load(args.pipeline_config_path)
    if args.format == "tflite":
        from tsoda.training.export_tflite import export_tflite

        result = export_tflite(config, args.model_dir, args.output_dir, args.quantize or "none")
        print(f"tflite model: {result.path} ({result.check.format()})")
        return
    from tsoda.training.export import export

    saved = export(config, args.model_dir, args.output_dir, args.nms_version)
    print(f"saved model: {saved}")


def loop_settings(args, labeled_dir=None, unlabeled_dir=None):
    from tsoda.loop.rounds import LoopSettings

    return LoopSettings(
        labeled_dir=Path(labeled_dir or args.labeled_dir),
        unlabeled_dir=Path(unlabeled_dir or args.unlabeled_dir),
        work_dir=Path(args.work_dir), threshold=args.threshold,
        uncertain_threshold=args.uncertain_threshold, target_precision=args.target_precision,
        target_recall=args.target_recall, min_holdout_boxes=args.min_holdout_boxes,
        ignore_regions=args.ignore_regions, tta=args.tta, pseudo_share=args.pseudo_share,
        pseudo_weight=args.pseudo_weight, pseudo_background=args.pseudo_background,
        pseudo_box_loss=args.pseudo_box_loss, strong_augment=args.strong_augment,
        initial_steps=args.initial_steps,
        step_increment=args.step_increment, max_steps=args.max_steps,
        max_rounds=args.max_rounds, test_fraction=args.test_fraction, seed=args.seed)


def _parts(args):
    from auto_annotate.label_map import load_label_map
    from tsoda.config.pipeline import load, require_label_map
    from tsoda.loop.adapters import ModelGardenTrainer, model_detector

    config = load(args.pipeline_config_path)
    label_map_path = args.label_map_path or require_label_map(config.message, config.source)
    trainer = ModelGardenTrainer(config, label_map_path, progress=not args.quiet)
    return trainer, model_detector(), load_label_map(label_map_path)


def _simulate(args) -> None:
    from tsoda.simulation.simulate import Simulation, simulate

    if args.review_budget < 0:
        raise ValueError(f"--review_budget must be >= 0, got {args.review_budget}")
    trainer, detectors, label_map = _parts(args)
    split = Path(args.work_dir) / "split"  # replaced per seed by seed<S>/split/{L,U}
    settings = loop_settings(args, labeled_dir=split / "L", unlabeled_dir=split / "U")
    simulate(settings, Simulation(Path(args.dataset_dir), args.labeled_fraction,
                                  Path(args.test_dir) if args.test_dir else None,
                                  seeds=args.seeds, review_budget=args.review_budget,
                                  baselines=args.baselines),
             trainer, detectors, label_map, progress=not args.quiet)
    print(f"report: {Path(args.work_dir) / 'report' / 'simulate.md'}")


def _run_loop(args) -> None:
    from tsoda.loop.rounds import TsodaLoop

    trainer, detectors, label_map = _parts(args)
    loop = TsodaLoop(loop_settings(args), trainer, detectors, label_map,
                     progress=not args.quiet)
    loop.run()
    print(f"labels: {Path(args.work_dir) / 'labels'}  report: {Path(args.work_dir) / 'report'}")
    print(f"review: python -m auto_annotate.review --imgs_path {args.unlabeled_dir} "
          f"--xml_path {Path(args.work_dir) / 'labels'}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_console(args.verbose, logging.WARNING if args.quiet else logging.INFO)
    return run_command(lambda: _run(args), interrupted="run the same command again to resume "
                                                       "from the last checkpoint")
