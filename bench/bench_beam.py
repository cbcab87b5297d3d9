"""Labelling on Apache Beam against the CLI: per-worker throughput, and what N workers give.

On one folder (default ../shared/data/flames/test) with the bundled seed detector
(tsoda/demo/seed_model), threshold 0.3, each case a fresh output folder, repeats
interleaved:

- cli:            python -m auto_annotate (one process; decoding threads ahead of the model)
- beam, 1 worker: python -m auto_annotate.beam --runner DirectRunner (in-process runner)
- beam, N workers: the same with --direct_num_workers N --direct_running_mode
                  multi_processing (N worker processes, each loading the model once)

Each run is a subprocess; the figures are the run's own ``time:`` line (the CLI: listing to
last label, model already loaded; Beam: the whole pipeline, worker start and model loading
included) and the command's wall time. Every Beam case also runs on a one-image folder:
its time is the pipeline's fixed overhead F, so the steady rate of k workers is
(n - 1) / (T(n) - F(1 image)). N workers, each with a machine like this one to itself, take
about F + n / (N * r) on n images, r the steady rate of one in-process worker.

Usage: python bench/bench_beam.py [--imgs_path DIR] [--repeats 2] [--workers 2] [--reproject]
Prints the figures; writes bench/results/beam.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import DEFAULT_TEST_IMAGES, ROOT, SEED_MODEL, machine, write_results  # noqa: E402

THRESHOLD = "0.3"


def command(case: str, imgs: Path, out: Path, label_map: Path, workers: int) -> list[str]:
    module = "auto_annotate" if case == "cli" else "auto_annotate.beam"
    flags = [sys.executable, "-m", module, "--model_path", str(SEED_MODEL), "--label_map_path",
             str(label_map), "--imgs_path", str(imgs), "--xml_path", str(out),
             "--threshold", THRESHOLD, "--quiet"]
    if case != "cli":
        flags += ["--runner", "DirectRunner"]
    if case == "beam_workers":
        flags += ["--direct_num_workers", str(workers), "--direct_running_mode",
                  "multi_processing"]
    return flags


def run_once(flags: list[str]) -> dict:
    """One run: its summary's counts and time, and the command's wall time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    done = subprocess.run(flags, capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(flags[:3])} failed:\n{done.stdout}\n{done.stderr[-3000:]}")

    def number(label: str) -> float:
        return float(re.search(rf"^{label}:\s+([\d.]+)", done.stdout, re.M).group(1))

    return {"seconds": number("time"), "wall": wall,
            "labelled": int(number("annotated") + number("no detection"))}


def summarize(runs: list[dict], key: str) -> dict:
    values = [run[key] for run in runs]
    return {"min": min(values), "median": statistics.median(values), "runs": values}


def measure(cases: dict, folders: dict, label_map: Path, workers: int, repeats: int) -> dict:
    runs: dict = {(case, size): [] for case in cases for size in folders}
    for _ in range(repeats):
        for case in cases:
            for size, folder in folders.items():
                if case == "cli" and size == "one":
                    continue
                with tempfile.TemporaryDirectory() as out:
                    runs[case, size].append(run_once(command(case, folder, Path(out),
                                                             label_map, workers)))
    return {key: value for key, value in runs.items() if value}


def derive(runs: dict, cases: dict, images: int) -> dict:
    """Rates per case: images/s end to end, per worker, and steady (fixed cost removed)."""
    result = {}
    for case, count in cases.items():
        seconds = summarize(runs[case, "all"], "seconds")["min"]
        entry = {"workers": count, "seconds": summarize(runs[case, "all"], "seconds"),
                 "wall": summarize(runs[case, "all"], "wall"),
                 "images_per_s": images / seconds,
                 "per_worker_images_per_s": images / seconds / count}
        if (case, "one") in runs:
            fixed = summarize(runs[case, "one"], "seconds")["min"]
            steady = (images - 1) / max(seconds - fixed, 1e-9)
            entry.update(fixed_seconds=fixed, steady_images_per_s=steady,
                         steady_per_worker_images_per_s=steady / count)
        result[case] = entry
    return result


def projection(result: dict, images: int, million: int = 1_000_000) -> dict:
    """N workers, each a machine like this one (2 cores to itself): N times the steady rate
    of one in-process worker, after the fixed cost measured with worker processes (start,
    model loading). A cluster's own start-up (machines, packages) comes on top."""
    rate = result["beam_1"]["steady_per_worker_images_per_s"]
    fixed = result["beam_workers"]["fixed_seconds"]
    return {str(n): {"images_per_s": n * rate,
                     f"hours_for_{million}": (fixed + million / (n * rate)) / 3600,
                     f"seconds_for_{images}": fixed + images / (n * rate)}
            for n in (1, 2, 8, 32, 100)}


def report(result: dict, proj: dict, images: int) -> None:
    print(f"{images} images, seed detector, threshold {THRESHOLD}")
    for case, entry in result.items():
        line = (f"{case:13s} workers {entry['workers']}: {entry['images_per_s']:.2f} images/s "
                f"({entry['per_worker_images_per_s']:.2f} per worker), run "
                f"{entry['seconds']['min']:.1f} s, wall {entry['wall']['min']:.1f} s")
        if "fixed_seconds" in entry:
            line += (f"; fixed {entry['fixed_seconds']:.1f} s, steady "
                     f"{entry['steady_per_worker_images_per_s']:.2f} images/s per worker")
        print(line)
    for n, entry in proj.items():
        print(f"projection, {n:>3s} workers: {entry['images_per_s']:.1f} images/s, "
              f"{entry['hours_for_1000000']:.1f} h for a million images")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--imgs_path", type=Path, default=DEFAULT_TEST_IMAGES)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reproject", action="store_true",
                        help="no new measurement: recompute the projection from "
                             "bench/results/beam.json and print it all again")
    args = parser.parse_args()
    if args.reproject:
        saved = json.loads((HERE / "results" / "beam.json").read_text())
        saved["projection"] = projection(saved["results"], saved["images"])
        report(saved["results"], saved["projection"], saved["images"])
        write_results("beam", saved)
        return
    from auto_annotate.images import list_images

    images = list_images(args.imgs_path)
    cases = {"cli": 1, "beam_1": 1, "beam_workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "label_map.pbtxt").write_text('item { id: 1 name: "flame" }\n')
        (tmp / "one").mkdir()
        shutil.copy(images[0], tmp / "one" / images[0].name)
        runs = measure(cases, {"all": args.imgs_path, "one": tmp / "one"},
                       tmp / "label_map.pbtxt", args.workers, args.repeats)
    for case in cases:
        assert {r["labelled"] for r in runs[case, "all"]} == {len(images)}, (case, runs)
    result = derive(runs, cases, len(images))
    proj = projection(result, len(images))
    report(result, proj, len(images))
    write_results("beam", {"machine": machine(), "images": len(images),
                           "imgs_path": args.imgs_path.name, "threshold": float(THRESHOLD),
                           "repeats": args.repeats, "results": result,
                           "projection": proj})


if __name__ == "__main__":
    main()
