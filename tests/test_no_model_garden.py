"""auto_annotate imports and labels a folder without TF Model Garden (the design rule)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    class BlockModelGarden:
        def find_spec(self, name, path=None, target=None):
            if name == "official" or name.startswith("official."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, BlockModelGarden())
    try:
        import official  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the blocker did not block official")

    import auto_annotate
    from auto_annotate.label_map import parse_label_map
    from auto_annotate.voc import read_voc
    from tests.helpers import LABEL_MAP, RED, FakeColorDetector, draw, save

    folder = Path(sys.argv[1])
    save(folder / "a.png", draw((60, 40), [(RED, (5, 10, 30, 30))]))
    summary = auto_annotate.annotate_folder(
        FakeColorDetector(), parse_label_map(LABEL_MAP), folder,
        options=auto_annotate.Options(progress=False))
    assert summary.annotated == 1 and summary.exit_code == 0, summary.format()
    assert [o.name for o in read_voc(folder / "a.xml").objects] == ["flame"]
    print("labelled without official")
""")


def test_auto_annotate_works_when_model_garden_cannot_be_imported(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "labelled without official"
