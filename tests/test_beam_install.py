"""Apache Beam is optional: the default install does not need it, and the beam extra
installs together with the training extra in one environment."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DIST = "auto-annotate-tsoda"
WITHOUT_BEAM = textwrap.dedent("""
    import sys
    from pathlib import Path

    class BlockBeam:
        def find_spec(self, name, path=None, target=None):
            if name == "apache_beam" or name.startswith("apache_beam."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, BlockBeam())
    import auto_annotate
    import tsoda.cli  # noqa: F401
    from auto_annotate.beam.cli import main
    from auto_annotate.label_map import parse_label_map
    from tests.helpers import LABEL_MAP, RED, FakeColorDetector, draw, save

    folder = Path(sys.argv[1])
    save(folder / "a.png", draw((60, 40), [(RED, (5, 10, 30, 30))]))
    summary = auto_annotate.annotate_folder(
        FakeColorDetector(), parse_label_map(LABEL_MAP), folder,
        options=auto_annotate.Options(progress=False))
    assert summary.annotated == 1, summary.format()
    sys.exit(main(["--model_path", "m", "--label_map_path", "l", "--imgs_path", str(folder),
                   "--runner", "DirectRunner"]))
""")


def _requirements() -> list[str]:
    try:
        return importlib.metadata.requires(DIST) or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{DIST} is not installed (pip install -e '.[dev]')")


def test_the_default_install_does_not_require_beam_and_the_extras_do():
    requirements = _requirements()
    base = [r for r in requirements if "extra ==" not in r]
    assert base and not any(r.startswith("apache-beam") for r in base)
    for extra in ("beam", "dev"):
        assert any(r.startswith("apache-beam") and re.search(rf"extra == .{extra}.", r)
                   for r in requirements), extra


def test_without_beam_labelling_works_and_the_beam_command_says_what_to_install(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", WITHOUT_BEAM, str(tmp_path)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert errors == [("error: labelling on Apache Beam needs apache-beam, which is not "
                       "installed: pip install '.[beam]'")]


def test_beam_and_the_training_stack_share_one_environment():
    pytest.importorskip("apache_beam")
    pytest.importorskip("official.vision")
    assert importlib.metadata.version("apache-beam").startswith("2.77.")
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                           text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
