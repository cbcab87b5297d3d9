"""The bundled demo: its files ship in the package, and it runs end to end (one short round)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from auto_annotate import voc
from auto_annotate.images import list_images
from tsoda import demo

ROOT = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def test_sample_is_30_photos_8_hand_labelled():
    hand, unlabelled = list_images(demo.DATA / "hand"), list_images(demo.DATA / "unlabelled")
    assert (len(hand), len(unlabelled)) == (8, 22)
    assert all(p.name.startswith("WEBFire") for p in hand + unlabelled)
    assert not list((demo.DATA / "unlabelled").glob("*.xml"))
    for image in hand:
        annotation = voc.read_voc(image.with_suffix(".xml"))
        assert annotation.filename == image.name and annotation.objects
    size = sum(p.stat().st_size for p in (demo.SEED_MODEL / "saved_model").rglob("*"))
    assert size < 20 * 2**20


def test_wheel_ships_the_demo_and_the_schema(tmp_path):
    had_build = (ROOT / "build").exists()
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                       check=True)
    finally:  # setuptools builds in the source tree
        if not had_build:
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    names = set(zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist())
    wanted = {f"tsoda/demo/{p}" for p in _digest(demo.HERE) if not p.endswith(".py")}
    assert wanted - names == set()
    assert {"tsoda/config/protos/pipeline.desc", "tsoda/demo/seed_model/saved_model/saved_model.pb",
            "tsoda/demo/data/label_map.pbtxt"} <= names


@pytest.mark.slow
def test_demo_runs_end_to_end_and_leaves_the_bundle_alone(tmp_path):
    before = _digest(demo.HERE)
    lines: list[str] = []
    paths = demo.run_demo(demo.DemoSettings(tmp_path / "demo", initial_steps=2, rounds=1,
                                            progress=False), echo=lines.append)
    assert _digest(demo.HERE) == before
    seed_xml = list(paths["seed labels (XML)"].glob("*.xml"))
    assert seed_xml, "the seed detector found no flame in 22 flame photos"
    for xml in seed_xml:
        annotation = voc.read_voc(xml)
        assert annotation.objects
        assert (tmp_path / "demo" / "unlabelled" / annotation.filename).is_file()
    table = paths["report table"].read_text()
    assert table.splitlines()[2].startswith("| 1 | 2 |")  # round 1, 2 steps
    assert paths["plot: mAP"].is_file() and paths["plot: remaining"].is_file()
    assert any("auto_annotate.review" in line for line in lines)
