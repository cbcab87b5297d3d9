"""Labelling runtimes: today's export, the fast-NMS export and LiteRT (fp32, fp16, int8).

The bundled seed detector (tsoda/demo/seed_model) is turned back into a checkpoint and
exported five ways: SavedModel with Model Garden's default NMS ("v2", what `tsoda export`
wrote before: the original tool's model), SavedModel with batched NMS (today's default), and
`.tflite` as float32, float16 weights and int8 (calibrated on flames/train). auto_annotate
runs a SavedModel frozen (variables as constants); the row "saved_model_v2_unfrozen" runs
the v2 export as auto_annotate did before it froze models (a TSODA round's labelling stage
before this work). Then, on one folder (default ../shared/data/flames/test), in one run
with repeats interleaved:

(a) limit: each runtime alone on pre-decoded input (SavedModel: the upright uint8 image,
    one per call, through the signature auto_annotate calls, frozen or not; LiteRT: frames
    letterboxed beforehand, run as auto_annotate runs them: groups of --batch_size side by
    side on one single-threaded interpreter per core);
(b) auto_annotate end to end with that model (decode, letterbox if needed, model, XML,
    manifest);
(c) the original tool's way: one image at a time, PIL decode, EXIF transpose, the v2
    SavedModel, XML written.

Prints images/s (min / median over repeats) and the ratios (b)/(a) and (b)/(c), plus
mAP@0.5 on the folder for each model (so the cost of quantization is a number); writes
bench/results/runtimes.json. The exports are kept in --work_dir and reused.

Usage: python bench/bench_runtimes.py [--imgs_path DIR] [--repeats 3] [--work_dir DIR]
       [--runtimes tflite_fp32,tflite_fp16]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_labelling import THRESHOLD, end_to_end, naive  # noqa: E402
from common import DEFAULT_TEST_IMAGES, FLAMES, SEED_MODEL, machine, write_results  # noqa: E402

from auto_annotate import load_detector  # noqa: E402
from auto_annotate.images import decode_image, list_images  # noqa: E402
from auto_annotate.label_map import load_label_map  # noqa: E402
from auto_annotate.litert import TFLiteDetector  # noqa: E402
from auto_annotate.model import frozen_function, load_signature  # noqa: E402

RUNTIMES = ("saved_model_v2_unfrozen", "saved_model_v2", "saved_model_batched", "tflite_fp32",
            "tflite_fp16", "tflite_int8")
UNFROZEN = "saved_model_v2_unfrozen"  # the v2 export, run with its variables (as before)
QUANTIZE = {"tflite_fp32": "none", "tflite_fp16": "fp16", "tflite_int8": "int8"}


def _config(work: Path) -> Path:
    """The seed model's pipeline.config with the flames label map and training records."""
    from tsoda.config.pipeline import load_pipeline_config, to_text
    from tsoda.data.tfrecords import write_tfrecords

    records = work / "train.record"
    if not list(work.glob("train.record*")):
        write_tfrecords(FLAMES / "train", FLAMES / "train", FLAMES / "label_map.pbtxt",
                        records, num_shards=2)
    pipeline = load_pipeline_config(SEED_MODEL.parent / "pipeline.config")
    pipeline.train_input_reader.label_map_path = str(FLAMES / "label_map.pbtxt")
    reader = pipeline.train_input_reader.tf_record_input_reader
    del reader.input_path[:]
    reader.input_path.append(str(work / "train.record*"))
    path = work / "pipeline.config"
    path.write_text(to_text(pipeline), encoding="utf-8")
    return path


def prepare(work: Path) -> dict[str, Path]:
    """The five exports of the seed model (made once, kept in ``work``)."""
    from tsoda.training.export import export
    from tsoda.training.export_tflite import export_tflite
    from tsoda.training.reexport import checkpoint_from_saved_model

    work.mkdir(parents=True, exist_ok=True)
    config, model_dir = _config(work), work / "model"
    if not (model_dir / "checkpoint").is_file():
        checkpoint_from_saved_model(config, SEED_MODEL, model_dir)
    models = {}
    for nms in ("v2", "batched"):
        out = work / f"saved_model_{nms}"
        if not (out / "saved_model" / "saved_model.pb").is_file():
            export(config, model_dir, out, nms_version=nms)
        models[f"saved_model_{nms}"] = out / "saved_model"
    models = {UNFROZEN: models["saved_model_v2"], **models}
    for name, quantize in QUANTIZE.items():
        out = work / name
        if not (out / "model.tflite").is_file():
            export_tflite(config, model_dir, out, quantize=quantize)
        models[name] = out / "model.tflite"
    return models


def _alone_saved_model(path: Path, images: list[np.ndarray], freeze: bool):
    _, function, _ = load_signature(path)
    if freeze:
        function = frozen_function(function, path)

    def run() -> float:
        start = time.perf_counter()
        for image in images:
            outputs = function(input_tensor=tf.constant(image[None]))
            _ = [value.numpy() for value in outputs.values()]
        return time.perf_counter() - start
    return run


def _alone_tflite(path: Path, images: list[np.ndarray], batch_size: int):
    """LiteRT as auto_annotate runs it (groups of ``batch_size`` side by side on one
    interpreter per core), on frames letterboxed beforehand."""
    detector = TFLiteDetector(path, batch_size)
    frames = [detector.prepare(image) for image in images]
    groups = [frames[i:i + batch_size] for i in range(0, len(frames), batch_size)]

    def run() -> float:
        start = time.perf_counter()
        for group in groups:
            detector.predict(group)
        return time.perf_counter() - start
    return run


def _row(rates: dict[str, list[float]], naive_rates: list[float]) -> dict:
    row = {k: {"min": min(v), "median": statistics.median(v), "runs": v}
           for k, v in rates.items()}
    row["b_over_a"] = statistics.median(b / a for a, b in zip(rates["a"], rates["b"],
                                                                strict=True))
    row["b_over_c"] = statistics.median(b / c for b, c in zip(rates["b"], naive_rates,
                                                                strict=True))
    return row


def measure(models: dict[str, Path], original_model: Path, imgs: Path, repeats: int,
            batch_size: int) -> dict:
    label_map = load_label_map(FLAMES / "label_map.pbtxt")
    paths = list_images(imgs)
    images = [decode_image(path).upright for path in paths]
    alone = {name: _alone_tflite(path, images, batch_size) if path.suffix == ".tflite" else
             _alone_saved_model(path, images, freeze=name != UNFROZEN)
             for name, path in models.items()}
    original = tf.saved_model.load(str(original_model)).signatures["serving_default"]
    for run in alone.values():  # warm-up: first calls of each runtime
        run()
    times = {name: {"a": [], "b": []} for name in models}
    naive_times = []
    for _ in range(repeats):
        for name, path in models.items():
            times[name]["a"].append(alone[name]())
            times[name]["b"].append(end_to_end(path, label_map, imgs, batch_size,
                                               freeze=name != UNFROZEN))
        naive_times.append(naive(original, paths))
    naive_rates = [len(paths) / s for s in naive_times]
    results = {name: _row({k: [len(paths) / s for s in v] for k, v in parts.items()},
                          naive_rates) for name, parts in times.items()}
    results["original_tool"] = {"c": {"min": min(naive_rates),
                                      "median": statistics.median(naive_rates),
                                      "runs": naive_rates}}
    return results


def accuracy(models: dict[str, Path], imgs: Path) -> dict[str, float]:
    from tsoda.training.evaluate import evaluate_detector

    label_map = load_label_map(FLAMES / "label_map.pbtxt")
    return {name: evaluate_detector(load_detector(path, 8, freeze=name != UNFROZEN), label_map,
                                    imgs).map50 for name, path in models.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgs_path", type=Path, default=DEFAULT_TEST_IMAGES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--work_dir", type=Path, default=HERE / ".work" / "runtimes")
    parser.add_argument("--runtimes", type=lambda text: text.split(","), default=RUNTIMES,
                        help=f"comma-separated subset of {','.join(RUNTIMES)} (default all; "
                             "the original tool (c) always runs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    exports = prepare(args.work_dir)
    models = {name: path for name, path in exports.items() if name in args.runtimes}
    sizes = {name: sum(p.stat().st_size for p in ([path] if path.is_file()
                                                  else path.rglob("*")) if p.is_file())
             for name, path in models.items()}
    results = measure(models, exports["saved_model_v2"], args.imgs_path, args.repeats,
                      args.batch_size)
    maps = accuracy(models, args.imgs_path)
    count = len(list_images(args.imgs_path))
    print(f"{count} images, {args.repeats} repeats; images/s min / median")
    original = results["original_tool"]["c"]
    print(f"{'original tool (c)':22s} {original['min']:6.1f} / {original['median']:6.1f}")
    for name in models:
        row = results[name]
        row.update(map50=maps[name], bytes=sizes[name])
        print(f"{name:22s} (a) {row['a']['min']:6.1f} / {row['a']['median']:6.1f}   "
              f"(b) {row['b']['min']:6.1f} / {row['b']['median']:6.1f}   "
              f"b/a {row['b_over_a']:.2f}  b/c {row['b_over_c']:.2f}   "
              f"mAP@0.5 {maps[name]:.4f}  {sizes[name] / 2**20:.1f} MiB")
    name = "runtimes" if set(models) == set(RUNTIMES) else "runtimes_partial"  # a subset
    write_results(name, {"machine": machine(), "images": count,
                         "imgs_path": args.imgs_path.name, "threshold": THRESHOLD,
                         "batch_size": args.batch_size, "results": results})


if __name__ == "__main__":
    main()
