"""Pascal VOC XML + images + label map -> sharded TFRecords; see tsoda.data.tfrecords.

With ``--beam``, the conversion runs as an Apache Beam pipeline (tsoda.data.beam; the
``beam`` extra) and every flag this script does not know is a Beam pipeline option
(``--runner DataflowRunner --project ...``); folders and output may then be URLs.

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
    parser.add_argument("--beam", action="store_true",
                        help="run as an Apache Beam pipeline; other flags are Beam's options")
    return parser


def _convert(args, beam_args: list[str]):
    from tsoda.data.tfrecords import write_tfrecords

    if not args.beam:
        return write_tfrecords(args.xml_dir, args.image_dir, args.label_map_path,
                               args.output_path, num_shards=args.num_shards)
    from auto_annotate.beam import refuse_unknown_flags, require_beam

    require_beam("TFRecord generation")
    refuse_unknown_flags(beam_args)
    from auto_annotate.beam.files import load_label_map_anywhere
    from tsoda.data.beam import write_tfrecords_beam

    return write_tfrecords_beam(args.xml_dir, args.image_dir,
                                load_label_map_anywhere(args.label_map_path),
                                args.output_path, args.num_shards, beam_args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and not args.beam:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from auto_annotate.console import run_command

    return run_command(lambda: _report(_convert(args, beam_args)))


def _report(report) -> int:
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
