"""Re-export the demo's seed detector (tsoda/demo/seed_model/saved_model, which has no
checkpoint) with today's `tsoda export` (batched NMS), check that its detections on the 30
demo photos are unchanged, and only then replace the bundled saved_model.

Usage: python scripts/reexport_seed_model.py [--dry_run]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry_run", action="store_true", help="compare only; keep the old one")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from auto_annotate.images import decode_image, list_images
    from tsoda.config.pipeline import load_pipeline_config, to_text
    from tsoda.demo import DATA, SEED_MODEL
    from tsoda.training.export import export
    from tsoda.training.reexport import checkpoint_from_saved_model, compare_saved_models

    old = SEED_MODEL / "saved_model"
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        pipeline = load_pipeline_config(SEED_MODEL / "pipeline.config")
        pipeline.train_input_reader.label_map_path = str(DATA / "label_map.pbtxt")
        (work / "pipeline.config").write_text(to_text(pipeline), encoding="utf-8")
        checkpoint_from_saved_model(work / "pipeline.config", old, work / "model")
        new = export(work / "pipeline.config", work / "model", work / "out")
        images = [decode_image(p).upright
                  for part in ("hand", "unlabelled") for p in list_images(DATA / part)]
        comparison = compare_saved_models(old, new, images)
        print(comparison.format())
        print(f"size: {_size(old)} -> {_size(new)} bytes")
        if not comparison.identical or args.dry_run:
            return 0 if comparison.identical else 1
        shutil.rmtree(old)
        shutil.copytree(new, old)
    print(f"replaced {old}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
