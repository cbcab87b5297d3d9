"""Draw the boxes of TFRecord examples onto their decoded images; see tsoda.data.tfrecords.

Images are decoded with tf.io.decode_image, as a trainer does, so a box drawn off its object
shows a frame mismatch between the pixels and the labels.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Save PNGs of TFRecord examples with their boxes and class names drawn.")
    parser.add_argument("--tfrecord", required=True, help="TFRecord file or glob pattern")
    parser.add_argument("--count", type=int, default=4, help="examples to draw (default 4)")
    parser.add_argument("--output_dir", required=True, help="folder for the PNG files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from auto_annotate.console import run_command
    from tsoda.data.draw import draw_tfrecords

    def draw() -> int:
        written = draw_tfrecords(args.tfrecord, args.output_dir, count=args.count)
        print("\n".join(str(path) for path in written))
        return 0

    return run_command(draw)


if __name__ == "__main__":
    sys.exit(main())
