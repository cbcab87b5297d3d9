"""Shared fixtures: tiny SavedModels (built once per session) and the test label map."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import LABEL_MAP, build_color_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # Qt image reading needs no screen
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flames"
EXIF_DATA = Path(__file__).resolve().parent / "data" / "exif"  # bundled; see its README

MODEL_VARIANTS = {
    "dynamic": {},
    "batch1": {"batch": 1},
    "float": {"dtype": "float32"},
    "fixed_size": {"size_hw": (96, 64)},
    "fixed_batch": {"batch": 3},
    "string": {"dtype": "string"},
}


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Colour-finding SavedModels, one per input-signature variant."""
    root = tmp_path_factory.mktemp("models")
    return {name: build_color_model(root / name, **kwargs)
            for name, kwargs in MODEL_VARIANTS.items()}


@pytest.fixture()
def label_map_path(tmp_path) -> Path:
    path = tmp_path / "label_map.pbtxt"
    path.write_text(LABEL_MAP, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory):
    """(pipeline.config, model dir, VOC folder) of a trained tiny detector, 64x128 input."""
    from tests.tsoda_helpers import train_tiny_detector

    return train_tiny_detector(tmp_path_factory.mktemp("tiny_detector"))


@pytest.fixture(scope="session")
def flames_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared flames data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def exif_dir() -> Path:
    """Three real phone photos stored rotated (EXIF orientation 6 or 8) with their VOC
    labels in the upright frame, and the flames label map (tests/data/README.md)."""
    return EXIF_DATA
