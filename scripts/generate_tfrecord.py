"""Pascal VOC XML + images + label map -> sharded TFRecords; see tsoda.tfrecords.

Exit status: 0 all files converted, 1 some file skipped or box dropped (no usable example:
nothing is written), 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert Pascal VOC XML and their images into TFRecords of "
                    "tf.train.Example (Object Detection API keys).")
    parser.add_argument("--xml_dir", required=True, help="folder of VOC .xml files")
    parser.add_argument("--image_dir", required=True, help="folder of the images")
    parser.add_argument("--label_map_path", required=True, help="label_map.pbtxt")
    parser.add_argument("--output_path", required=True,
                        help="output file; with --num_shards N > 1, OUTPUT-0000i-of-0000N")
    parser.add_argument("--num_shards", type=int, default=1, help="number of shards (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from auto_annotate.errors import AnnotateError
    from tsoda.tfrecords import write_tfrecords

    try:
        report = write_tfrecords(args.xml_dir, args.image_dir, args.label_map_path,
                                 args.output_path, num_shards=args.num_shards)
    except AnnotateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
