"""Labelling throughput: the model alone vs auto_annotate vs the naive per-image loop.

On one folder (default ../shared/data/flames/test) and one SavedModel per row, in one run,
repeats interleaved so that machine noise hits every case alike:

(a) limit: the model alone on pre-decoded, pre-batched tensors (images of one size batched
    together up to --batch_size, as a dynamic-size model allows; batch 1 for a batch-1 model),
    its graph frozen as auto_annotate runs it;
(b) auto_annotate end to end (annotate_folder with the SavedModel detector: decoding,
    batching, model, thresholds, XML and manifest written);
(c) naive: one image at a time: PIL decode, EXIF transpose, model call (the SavedModel as
    loaded, not frozen), XML write.

Models: the bundled seed detector (tsoda/demo/seed_model) and a tiny random CNN, each as the
dynamic-batch SavedModel and as a batch-1 SavedModel ([1, H, W, 3] wrapper of the same graph).
Each measurement starts from a freshly loaded model; loading is not timed.
Prints images/s (min / median) and the ratios (b)/(a), (b)/(c); writes
bench/results/labelling.json.

Usage: python bench/bench_labelling.py [--imgs_path DIR] [--repeats 3] [--batch_size 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import DEFAULT_TEST_IMAGES, SEED_MODEL, machine, write_results  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from tiny_models import build_tiny_cnn  # noqa: E402

from auto_annotate.annotate import Options, annotate_folder  # noqa: E402
from auto_annotate.images import decode_image, list_images  # noqa: E402
from auto_annotate.label_map import LabelMap, load_label_map  # noqa: E402
from auto_annotate.model import frozen_function, load_detector, load_signature  # noqa: E402

THRESHOLD = 0.3


def batch1_wrapper(source: Path, target: Path) -> Path:
    """The same model behind a [1, H, W, 3] signature."""
    loaded = tf.saved_model.load(str(source))
    function = loaded.signatures["serving_default"]
    module = tf.Module()
    module.loaded = loaded
    module.serve = tf.function(lambda input_tensor: function(input_tensor=input_tensor),
                               input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8,
                                                              name="input_tensor")])
    tf.saved_model.save(module, str(target),
                        signatures={"serving_default": module.serve.get_concrete_function()})
    return target


def model_alone(function, batches: list[tf.Tensor]) -> float:
    """(a): seconds for the model on ready tensors (outputs fetched to host)."""
    start = time.perf_counter()
    for batch in batches:
        outputs = function(input_tensor=batch)
        _ = [value.numpy() for value in outputs.values()]
    return time.perf_counter() - start


def load(model: Path, freeze: bool = True):
    """The model's serving signature: frozen as auto_annotate runs it ((a), (b)), or as
    loaded, the way the original tool calls it ((c))."""
    _, function, _ = load_signature(model)
    return frozen_function(function, model) if freeze else function


def end_to_end(model: Path, label_map: LabelMap, imgs: Path, batch_size: int,
               freeze: bool = True) -> float:
    """(b): seconds for auto_annotate on the folder, writing into a fresh folder
    (``freeze``: a SavedModel runs frozen, as auto_annotate runs it)."""
    detector = load_detector(model, batch_size, freeze=freeze)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = annotate_folder(detector, label_map, imgs, out,
                                  Options(threshold=THRESHOLD, progress=False))
        seconds = time.perf_counter() - start
    assert summary.exit_code == 0, summary.format()
    return seconds


def naive_xml(path: Path, size: tuple[int, int], boxes, out: Path) -> None:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = path.name
    element = ET.SubElement(root, "size")
    for tag, value in zip(("width", "height", "depth"), (*size, 3), strict=True):
        ET.SubElement(element, tag).text = str(value)
    for ymin, xmin, ymax, xmax in boxes:
        box = ET.SubElement(ET.SubElement(root, "object"), "bndbox")
        for tag, value in (("xmin", xmin * size[0]), ("ymin", ymin * size[1]),
                           ("xmax", xmax * size[0]), ("ymax", ymax * size[1])):
            ET.SubElement(box, tag).text = str(int(value))
    ET.ElementTree(root).write(out / (path.stem + ".xml"))


def naive(function, images: list[Path]) -> float:
    """(c): seconds for the one-image-at-a-time loop of the original tool."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        for path in images:
            with Image.open(path) as image:
                pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
            outputs = function(input_tensor=tf.convert_to_tensor(pixels[None]))
            scores = outputs["detection_scores"].numpy()[0]
            boxes = outputs["detection_boxes"].numpy()[0][scores >= THRESHOLD]
            naive_xml(path, (pixels.shape[1], pixels.shape[0]), boxes, Path(out))
        return time.perf_counter() - start


def prebatched(images: list[Path], batch: int) -> list[tf.Tensor]:
    by_size = defaultdict(list)
    for path in images:
        pixels = decode_image(path).upright
        by_size[pixels.shape].append(pixels)
    return [tf.constant(np.stack(group[i:i + batch])) for group in by_size.values()
            for i in range(0, len(group), batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--imgs_path", type=Path, default=DEFAULT_TEST_IMAGES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["seed", "tiny"])
    args = parser.parse_args()
    images = list_images(args.imgs_path)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "label_map.pbtxt").write_text('item { id: 1 name: "flame" }\n')
        label_map = load_label_map(tmp / "label_map.pbtxt")
        sources = {"seed": SEED_MODEL, "tiny": build_tiny_cnn(tmp / "tiny")}
        cases = {}
        for name in args.models:
            cases[f"{name}, dynamic batch"] = (sources[name], args.batch_size)
            cases[f"{name}, batch-1 model"] = (batch1_wrapper(sources[name], tmp / f"{name}1"), 1)
        times = {case: defaultdict(list) for case in cases}
        batches = {1: prebatched(images, 1), args.batch_size: prebatched(images, args.batch_size)}
        for model, batch in cases.values():  # warm up the process-wide caches
            model_alone(load(model), batches[batch])
        # Every measurement starts from a freshly loaded model (loading not timed), as a
        # user's run does: each pays the model's first calls for new shapes alike.
        for _ in range(args.repeats):
            for case, (model, batch) in cases.items():
                times[case]["a"].append(model_alone(load(model), batches[batch]))
                times[case]["b"].append(end_to_end(model, label_map, args.imgs_path, batch))
                times[case]["c"].append(naive(load(model, freeze=False), images))
    results = {}
    print(f"{len(images)} images, {args.repeats} repeats; images/s min / median")
    for case, parts in times.items():
        rates = {k: [len(images) / s for s in v] for k, v in parts.items()}
        row = {k: {"min": min(v), "median": statistics.median(v), "runs": v}
               for k, v in rates.items()}
        row["b_over_a"] = statistics.median(b / a for a, b in zip(rates["a"], rates["b"],
                                                                    strict=True))
        row["b_over_c"] = statistics.median(b / c for b, c in zip(rates["b"], rates["c"],
                                                                    strict=True))
        results[case] = row
        print(f"{case:26s} (a) {row['a']['min']:6.1f} / {row['a']['median']:6.1f}   "
              f"(b) {row['b']['min']:6.1f} / {row['b']['median']:6.1f}   "
              f"(c) {row['c']['min']:6.1f} / {row['c']['median']:6.1f}   "
              f"b/a {row['b_over_a']:.2f}  b/c {row['b_over_c']:.2f}")
    write_results("labelling", {"machine": machine(), "images": len(images),
                                "imgs_path": args.imgs_path.name, "threshold": THRESHOLD,
                                "batch_size": args.batch_size, "results": results})


if __name__ == "__main__":
    main()
