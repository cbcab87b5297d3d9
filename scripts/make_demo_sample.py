"""Builds the demo sample bundled in tsoda/demo/data from ../shared/data/flames/train.

Takes every 5th ``WEBFire*`` photo (D-Fire, CC0) in name order, 30 in all; the first 8 keep
their hand labels, rewritten as LabelImg writes them, the other 22 go in unlabelled without
their XML. The long Roboflow names are shortened to ``WEBFire025.jpg``; image bytes are copied
unchanged. Also writes ``demo_images.txt``: the source names, which the seed detector's
training (scripts/make_demo_model.sh) leaves out.

Usage: python scripts/make_demo_sample.py [--source DIR] [--output tsoda/demo/data]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auto_annotate import voc  # noqa: E402

COUNT, EVERY, HAND = 30, 5, 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path,
                        default=ROOT.parent / "shared" / "data" / "flames" / "train")
    parser.add_argument("--output", type=Path, default=ROOT / "tsoda" / "demo" / "data")
    args = parser.parse_args()
    photos = sorted(p for p in args.source.glob("WEBFire*.jpg"))[::EVERY][:COUNT]
    if len(photos) < COUNT:
        raise SystemExit(f"{args.source}: only {len(photos)} WEBFire photos to choose from")
    for part in ("hand", "unlabelled"):
        shutil.rmtree(args.output / part, ignore_errors=True)
        (args.output / part).mkdir(parents=True)
    boxes = 0
    for index, photo in enumerate(photos):
        name = photo.name.split("_jpg")[0] + ".jpg"
        folder = args.output / ("hand" if index < HAND else "unlabelled")
        shutil.copyfile(photo, folder / name)
        if index < HAND:
            source = voc.read_voc(photo.with_suffix(".xml"))
            voc.write_voc((folder / name).with_suffix(".xml"), dataclasses.replace(
                source, filename=name, folder=folder.name, path=name))
            boxes += len(source.objects)
    (args.output / "demo_images.txt").write_text("".join(p.name + "\n" for p in photos))
    print(f"{args.output}: {HAND} hand-labelled photos ({boxes} boxes), "
          f"{COUNT - HAND} unlabelled")


if __name__ == "__main__":
    main()
