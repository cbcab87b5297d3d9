"""Anchor shapes from the labelled boxes: k-means with 1 - IoU as the distance.

Boxes are compared by shape only (width, height), as the model sees them: scaled into the
config's input size the way Model Garden's parser does (aspect ratio kept). The centroids
give aspect ratios (width / height, as the multiscale anchor generator reads them) and
sizes, which are set against the anchor sizes the config's levels produce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from auto_annotate import voc
from auto_annotate.errors import AnnotateError


@dataclass(frozen=True)
class AnchorFit:
    """K-means result: centroids (K, 2) as (width, height) in model-input pixels."""

    centroids: np.ndarray
    mean_iou: float
    aspect_ratios: list[float]
    sizes: list[float]


def box_shapes(xml_dir: str | Path, input_hw: tuple[int, int] | None = None) -> np.ndarray:
    """(N, 2) widths and heights of every box under ``xml_dir``; in model-input pixels
    (image scaled to fit ``input_hw``, aspect kept) when given, else in image pixels.

    Raises:
        AnnotateError: the folder does not exist or holds no .xml file.
    """
    xml_dir = Path(xml_dir)
    if not xml_dir.is_dir():
        raise AnnotateError(xml_dir, "folder does not exist")
    paths = sorted(xml_dir.glob("*.xml"))
    if not paths:
        raise AnnotateError(xml_dir, "no .xml file in the folder")
    shapes = []
    for path in paths:
        try:
            annotation = voc.read_voc(path)
        except AnnotateError:
            continue
        scale = 1.0
        if input_hw is not None:
            scale = min(input_hw[0] / annotation.height, input_hw[1] / annotation.width)
        for obj in annotation.objects:
            x0, y0, x1, y1 = obj.box
            if x1 > x0 and y1 > y0:
                shapes.append(((x1 - x0) * scale, (y1 - y0) * scale))
    return np.array(shapes, dtype=np.float64).reshape(-1, 2)


def shape_iou(shapes: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(N, K) IoU of boxes and centroids placed on the same centre."""
    inter = (np.minimum(shapes[:, None, 0], centroids[None, :, 0])
             * np.minimum(shapes[:, None, 1], centroids[None, :, 1]))
    areas = shapes[:, 0:1] * shapes[:, 1:2] + (centroids[:, 0] * centroids[:, 1])[None, :]
    return inter / (areas - inter)


def _kmeans_once(shapes: np.ndarray, k: int, rng, iterations: int) -> np.ndarray:
    centroids = shapes[[rng.integers(len(shapes))]]
    while len(centroids) < k:  # k-means++: far boxes are likelier picks
        distance = 1.0 - shape_iou(shapes, centroids).max(axis=1)
        weights = distance / distance.sum() if distance.sum() > 0 else None
        centroids = np.vstack([centroids, shapes[rng.choice(len(shapes), p=weights)]])
    for _ in range(iterations):
        nearest = shape_iou(shapes, centroids).argmax(axis=1)
        updated = np.array([np.median(shapes[nearest == j], axis=0) if np.any(nearest == j)
                            else centroids[j] for j in range(k)])
        if np.allclose(updated, centroids):
            break
        centroids = updated
    return centroids


def kmeans_iou(shapes: np.ndarray, k: int, seed: int = 0, iterations: int = 300,
               restarts: int = 8) -> AnchorFit:
    """K-means (k-means++ starts, the best of ``restarts``) under the distance 1 - IoU;
    centroids are cluster medians."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(shapes) < k:
        raise ValueError(f"{len(shapes)} boxes are fewer than k = {k}")
    rng = np.random.default_rng(seed)
    runs = [_kmeans_once(shapes, k, rng, iterations) for _ in range(restarts)]
    centroids = max(runs, key=lambda c: shape_iou(shapes, c).max(axis=1).mean())
    centroids = centroids[np.argsort(centroids[:, 0] * centroids[:, 1])]
    mean_iou = float(shape_iou(shapes, centroids).max(axis=1).mean())
    ratios = sorted({round(float(w / h), 2) for w, h in centroids})
    sizes = [round(float(math.sqrt(w * h)), 1) for w, h in centroids]
    return AnchorFit(centroids, mean_iou, ratios, sizes)


def config_anchor_shapes(min_level: int, max_level: int, anchor_scale: float,
                         scales_per_octave: int, aspect_ratios: list[float]) -> np.ndarray:
    """(M, 2) anchor widths and heights a multiscale anchor generator produces."""
    shapes = []
    for level in range(min_level, max_level + 1):
        for octave in range(scales_per_octave):
            size = anchor_scale * 2 ** level * 2 ** (octave / scales_per_octave)
            for ratio in aspect_ratios:
                shapes.append((size * math.sqrt(ratio), size / math.sqrt(ratio)))
    return np.array(shapes)


def best_iou(shapes: np.ndarray, anchors: np.ndarray) -> float:
    """Mean over boxes of the IoU with their best-fitting anchor shape."""
    return float(shape_iou(shapes, anchors).max(axis=1).mean())


def fit_aspect_ratios(shapes: np.ndarray, count: int, seed: int = 0) -> list[float]:
    """``count`` aspect ratios (width / height): k-means on the box shapes scaled to one
    area, so that clusters differ by shape only, not by size."""
    unit = shapes / np.sqrt(shapes[:, 0:1] * shapes[:, 1:2])
    fit = kmeans_iou(unit, count, seed)
    return sorted(round(float(w / h), 2) for w, h in fit.centroids)


def best_anchor_scale(shapes: np.ndarray, min_level: int, max_level: int,
                      scales_per_octave: int, aspect_ratios: list[float],
                      candidates=(1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)) -> dict[float, float]:
    """Mean best IoU for each candidate anchor_scale with the given levels and ratios."""
    return {scale: best_iou(shapes, config_anchor_shapes(min_level, max_level, scale,
                                                         scales_per_octave, aspect_ratios))
            for scale in candidates}


def _leading_comments(text: str) -> str:
    """The comment block at the top of a config (comment and blank lines), kept on writing."""
    lines = []
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.lstrip().startswith("#"):
            break
        lines.append(line)
    return "".join(lines)


def _check_written(path: Path, aspect_ratios: list[float], anchor_scale: float) -> bool:
    """True when the file at ``path`` parses to these anchor values (as float32 fields)."""
    from tsoda.config.pipeline import load_pipeline_config

    written = load_pipeline_config(path).model.ssd.anchor_generator.multiscale_anchor_generator
    return (list(np.float32(written.aspect_ratios)) == list(np.float32(aspect_ratios))
            and np.float32(written.anchor_scale) == np.float32(anchor_scale))


def write_anchor_fields(config_path: str | Path, aspect_ratios: list[float],
                        anchor_scale: float) -> None:
    """Sets aspect_ratios and anchor_scale of the config's multiscale anchor generator.

    The parsed message is edited and written back in protobuf text format (atomically),
    so commented-out fields are never taken for the real ones; the comment block at the
    top of the file is kept, comments inside the messages are not. The file is then read
    again and must hold exactly these values, else the original text is put back.

    Raises:
        PipelineConfigError: the config cannot be parsed.
        ValueError: it has no multiscale_anchor_generator, or the values did not survive
            writing (the original file is restored).
    """
    from auto_annotate.fileio import atomic_write_text
    from tsoda.config.pipeline import parse_pipeline_config, to_text

    path = Path(config_path)
    original = path.read_text(encoding="utf-8")
    pipeline = parse_pipeline_config(original, path)
    generator = pipeline.model.ssd.anchor_generator
    if not generator.HasField("multiscale_anchor_generator"):
        raise ValueError(f"{path}: model.ssd.anchor_generator has no "
                         "multiscale_anchor_generator to write into")
    generator.multiscale_anchor_generator.aspect_ratios[:] = aspect_ratios
    generator.multiscale_anchor_generator.anchor_scale = anchor_scale
    atomic_write_text(path, _leading_comments(original) + to_text(pipeline))
    if not _check_written(path, aspect_ratios, anchor_scale):
        atomic_write_text(path, original)
        raise ValueError(f"{path}: the written anchor fields do not read back as "
                         f"{aspect_ratios} and {anchor_scale}; the original file is restored")
