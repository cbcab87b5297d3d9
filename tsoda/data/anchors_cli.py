"""Command line of scripts/kmeans_anchors.py: parse flags, fit, print, optionally write."""

from __future__ import annotations

import argparse

from auto_annotate.console import run_command
from tsoda.data import anchors


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _config_anchors(path):
    from tsoda.config.pipeline import load_pipeline_config

    ssd = load_pipeline_config(path).model.ssd
    size = ssd.image_resizer.fixed_shape_resizer
    generator = ssd.anchor_generator.multiscale_anchor_generator
    shapes = anchors.config_anchor_shapes(
        generator.min_level, generator.max_level, generator.anchor_scale,
        generator.scales_per_octave, list(generator.aspect_ratios) or [0.5, 1.0, 2.0])
    return (size.height, size.width), generator, shapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kmeans_anchors.py", description=__doc__)
    parser.add_argument("--xml_dir", required=True, help="folder of VOC XML")
    parser.add_argument("--k", type=_positive, default=5,
                        help="number of size clusters (default 5)")
    parser.add_argument("--num_ratios", type=_positive, default=3,
                        help="number of aspect ratios to fit (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pipeline_config_path", help="compare with (and write into) it")
    parser.add_argument("--write", action="store_true",
                        help="replace the config's aspect_ratios with the fitted ones")
    args = parser.parse_args(argv)
    return run_command(lambda: _fit(args))


def _fit(args) -> int:
    config = _config_anchors(args.pipeline_config_path) if args.pipeline_config_path else None
    shapes = anchors.box_shapes(args.xml_dir, config[0] if config else None)
    fit = anchors.kmeans_iou(shapes, args.k, args.seed)
    ratios = anchors.fit_aspect_ratios(shapes, args.num_ratios, args.seed)
    unit = "model-input pixels" if config else "image pixels"
    print(f"{len(shapes)} boxes, k = {args.k}, mean IoU with the nearest centroid "
          f"{fit.mean_iou:.3f}")
    for (width, height), size in zip(fit.centroids, fit.sizes, strict=True):
        print(f"  centroid {width:7.1f} x {height:7.1f} {unit}  (size {size}, "
              f"ratio w/h {width / height:.2f})")
    print(f"aspect_ratios (shape-only k-means): [{', '.join(f'{r:g}' for r in ratios)}]")
    if config:
        _report_config(args, shapes, config, ratios)
    return 0


def _report_config(args, shapes, config, ratios) -> None:
    _, generator, current = config
    print(f"config: levels {generator.min_level}-{generator.max_level}, anchor_scale "
          f"{generator.anchor_scale:g}, anchor sizes "
          f"{sorted({round(float((w * h) ** 0.5), 1) for w, h in current})}; mean best IoU "
          f"{anchors.best_iou(shapes, current):.3f}")
    by_scale = anchors.best_anchor_scale(shapes, generator.min_level, generator.max_level,
                                         generator.scales_per_octave, ratios)
    for scale, iou in by_scale.items():
        print(f"  anchor_scale {scale:g} with the fitted ratios: mean best IoU {iou:.3f}")
    best = max(by_scale, key=by_scale.get)
    print(f"best: anchor_scale {best:g}")
    if args.write:
        anchors.write_anchor_fields(args.pipeline_config_path, ratios, best)
        print(f"written: {args.pipeline_config_path} (read back: aspect_ratios and "
              "anchor_scale as printed; comments inside the config are not kept)")
