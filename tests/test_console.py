"""The console shows our own lines; TensorFlow's start-up noise only with --verbose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import RED, draw, save

REPO = Path(__file__).resolve().parents[1]
NOISE = ("cuInit", "oneDNN", "cpu_feature_guard", "cuda", "absl", "Input dict contained")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}  # as a user runs it
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def _noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(word in line for word in NOISE)]


def test_auto_annotate_console_has_our_lines_only_unless_verbose(tmp_path, models,
                                                                 label_map_path):
    save(tmp_path / "imgs" / "a.png", draw((40, 30), [(RED, (2, 2, 12, 12))]))
    command = ["-m", "auto_annotate", "--saved_model_path", str(models["dynamic"]),
               "--label_map_path", str(label_map_path), "--imgs_path", str(tmp_path / "imgs"),
               "--quiet"]
    quiet = _run(*command)
    assert quiet.returncode == 0 and "annotated:         1" in quiet.stdout
    assert _noise(quiet.stderr) == [] and quiet.stderr.strip() == ""
    verbose = _run(*command, "--overwrite", "--verbose")
    assert verbose.returncode == 0 and len(verbose.stderr) > len(quiet.stderr)


def test_tsoda_console_has_our_lines_only(tmp_path, models, label_map_path):
    from auto_annotate import voc

    save(tmp_path / "data" / "a.png", draw((40, 30), [(RED, (2, 2, 12, 12))]))
    voc.write_voc(tmp_path / "data" / "a.xml", voc.VocAnnotation(
        "a.png", 40, 30, objects=(voc.VocObject("flame", (2.0, 2.0, 12.0, 12.0)),)))
    result = _run("-m", "tsoda", "evaluate", "--saved_model_path", str(models["dynamic"]),
                  "--label_map_path", str(label_map_path), "--data_dir", str(tmp_path / "data"),
                  "--output_path", str(tmp_path / "m.json"))
    assert result.returncode == 0 and "mAP@0.5" in result.stdout
    assert _noise(result.stderr) == []


def test_the_tf_keras_input_dict_warning_is_silenced_unless_verbose():
    code = ("import sys, warnings; from auto_annotate.console import setup_console; "
            "setup_console(verbose=sys.argv[1] == 'v'); "
            "warnings.warn(\"Input dict contained keys ['6'] which did not match any model "
            "input. They will be ignored by the model.\")")
    assert _run("-c", code, "q").stderr == ""
    assert "Input dict contained keys" in _run("-c", code, "v").stderr
