"""Shared bits of the benchmarks: default data, the machine description, the results file."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLAMES = ROOT.parent / "shared" / "data" / "flames"
DEFAULT_TEST_IMAGES = FLAMES / "test"
SEED_MODEL = ROOT / "tsoda" / "demo" / "seed_model" / "saved_model"


def machine() -> dict:
    """What the figures were measured on."""
    memory = None
    if Path("/proc/meminfo").is_file():
        first = Path("/proc/meminfo").read_text().splitlines()[0].split()
        memory = f"{int(first[1]) / 2**20:.1f} GiB"
    cpu = None
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in
                 Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else None
    import tensorflow as tf

    return {"platform": platform.platform(), "cpu": cpu, "python": platform.python_version(),
            "cpus": os.cpu_count(), "memory": memory, "tensorflow": tf.__version__}


def write_results(name: str, payload: dict) -> Path:
    out = HERE / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"written: {out}")
    return out
