"""Labelling throughput of auto_annotate: batch 1 vs batched, on one folder, in one run.

Usage: python bench/bench_annotate.py [--imgs_path DIR] [--repeats 3] [--batch_size 8]
Prints images/s (min and median over repeats) and writes bench/results/annotate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from tiny_models import build_tiny_cnn  # noqa: E402

from auto_annotate import AutoAnnotate  # noqa: E402

DEFAULT_IMAGES = HERE.parent.parent / "shared" / "data" / "flames" / "test"


def run_once(model: Path, label_map: Path, imgs: Path, batch_size: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as out:
        job = AutoAnnotate(model, label_map, imgs, out, threshold=0.0, batch_size=batch_size,
                           progress=False)
        start = time.perf_counter()
        summary = job.generate_annotations()
        elapsed = time.perf_counter() - start
    assert summary.exit_code == 0, summary.format()
    return summary.processed / elapsed, summary.processed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--imgs_path", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        label_map = tmp / "label_map.pbtxt"
        label_map.write_text('item { id: 1 name: "flame" }\n')
        cases = {"batch1 model, batch 1": (build_tiny_cnn(tmp / "b1", batch=1), 1),
                 f"dynamic model, batch {args.batch_size}": (build_tiny_cnn(tmp / "dyn"),
                                                              args.batch_size),
                 "dynamic model, batch 1": (tmp / "dyn", 1)}
        rates = {name: [] for name in cases}
        for _ in range(args.repeats):  # interleaved, so machine noise hits every case alike
            for name, (model, batch) in cases.items():
                rate, count = run_once(model, label_map, args.imgs_path, batch)
                rates[name].append(rate)
    results = {name: {"images": count, "min_img_per_s": min(r), "median_img_per_s":
                      statistics.median(r), "runs": r} for name, r in rates.items()}
    for name, row in results.items():
        print(f"{name:28s} min {row['min_img_per_s']:7.1f}  median "
              f"{row['median_img_per_s']:7.1f} images/s  ({row['images']} images)")
    out = HERE / "results" / "annotate.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                               "imgs_path": str(args.imgs_path.name), "results": results},
                              indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
