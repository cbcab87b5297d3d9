"""Peak memory (RSS) of labelling and of training, each in a fresh process.

- Labelling: ``python -m auto_annotate`` with the bundled seed detector on folders of 100, 300
  and 1,000 images (symbolic links to the flames photos, train + test + exif_raw, repeated
  under new names to reach the count). Peak RSS should not grow with the number of images.
- Training: ``python -m tsoda train`` for --train_steps steps of the seed detector's config on
  TFRecords of ../shared/data/flames/train.

Peak RSS is the child's ru_maxrss. Writes bench/results/memory.json.

Usage: python bench/bench_memory.py [--counts 100 300 1000] [--train_steps 40]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import FLAMES, ROOT, SEED_MODEL, machine, write_results  # noqa: E402

from auto_annotate.images import list_images  # noqa: E402

PEAK = ("import resource, runpy, sys; sys.argv = sys.argv[1:]; "
        "code = 0\ntry:\n    runpy.run_module(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as exit:\n    code = exit.code or 0\n"
        "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(code)")


def peak_of(module: str, *args: str) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of ``python -m module args`` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, module, *args], capture_output=True,
                          text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{module} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    line = [x for x in done.stderr.splitlines() if x.startswith("PEAK_KIB")][-1]
    return int(line.split()[1]) / 1024, seconds


def image_folder(folder: Path, count: int) -> Path:
    pool = [p for part in ("train", "test", "exif_raw") for p in list_images(FLAMES / part)]
    folder.mkdir(parents=True)
    for index in range(count):
        source = pool[index % len(pool)]
        (folder / f"{index:05d}{source.suffix.lower()}").symlink_to(source)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--train_steps", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()
    labelling = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for count in args.counts:
            imgs = image_folder(tmp / f"imgs{count}", count)
            peak, seconds = peak_of(
                "auto_annotate", "--saved_model_path", str(SEED_MODEL), "--label_map_path",
                str(FLAMES / "label_map.pbtxt"), "--imgs_path", str(imgs), "--xml_path",
                str(tmp / f"xml{count}"), "--threshold", "0.3", "--batch_size",
                str(args.batch_size), "--quiet")
            labelling[count] = {"peak_rss_mib": peak, "seconds": seconds}
            print(f"labelling {count:5d} images: peak RSS {peak:7.0f} MiB ({seconds:.0f} s)")
        from bench_training import flames_train_config

        config = flames_train_config(ROOT / "configs" / "efficientdet_lite0_slim.config", tmp)
        peak, seconds = peak_of("tsoda", "train", "--pipeline_config_path", str(config),
                                "--model_dir", str(tmp / "model"), "--num_train_steps",
                                str(args.train_steps), "--quiet")
        print(f"training {args.train_steps} steps: peak RSS {peak:7.0f} MiB ({seconds:.0f} s)")
    write_results("memory", {"machine": machine(), "labelling": labelling,
                             "training": {"config": "efficientdet_lite0_slim.config",
                                          "steps": args.train_steps, "peak_rss_mib": peak,
                                          "seconds": seconds}})


if __name__ == "__main__":
    main()
