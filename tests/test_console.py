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


def test_run_command_turns_errors_into_one_line_and_status_2(capsys):
    from auto_annotate.console import run_command
    from auto_annotate.errors import AnnotateError

    def fails() -> int:
        raise AnnotateError(Path("some/file.xml"), "not a VOC file")

    assert run_command(fails) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: some/file.xml: not a VOC file"]
    assert run_command(lambda: int("x")) == 2  # a bad value named by the parser
    assert capsys.readouterr().err.startswith("error: invalid literal")
    assert run_command(lambda: 1) == 1  # the body's own status passes through


def test_run_command_on_ctrl_c_prints_the_hint_or_lets_it_through(capsys):
    from auto_annotate.console import run_command

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_command(interrupted, interrupted="run it again to resume") == 130
    assert capsys.readouterr().err == "interrupted: run it again to resume\n"
    try:
        run_command(interrupted)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("without a hint, Ctrl-C must reach the caller")


def test_every_command_line_reports_errors_the_same_way(tmp_path):
    """Each command's bad input ends with one `error:` line naming the file, status 2."""
    missing = str(tmp_path / "missing")
    commands = [
        ["-m", "auto_annotate", "--model_path", missing, "--label_map_path", missing,
         "--imgs_path", missing],
        ["-m", "tsoda", "stats", missing],
        ["-m", "auto_annotate.review", "--queue", missing],
        ["scripts/kmeans_anchors.py", "--xml_dir", missing],
        ["scripts/threshold_study.py", "--loop_dir", missing, "--dataset_dir", missing],
    ]
    for command in commands:
        result = _run(*command)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (command, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and "missing" in lines[0], \
            (command, result.stderr)


def test_console_entry_points_name_the_command_mains():
    """`auto-annotate` and `tsoda` (setup.py's console scripts) run the same mains as
    `python -m ...`; the installed scripts are checked when the package is installed."""
    import importlib
    import re
    import shutil

    text = (REPO / "setup.py").read_text(encoding="utf-8")
    scripts = dict(re.findall(r'"([\w-]+) = ([\w.]+:\w+)"', text))
    assert scripts == {"auto-annotate": "auto_annotate.cli:main", "tsoda": "tsoda.cli:main"}
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function))
    installed = shutil.which("tsoda", path=str(Path(sys.executable).parent))
    if installed:  # an installed checkout: the script itself answers
        result = subprocess.run([installed, "--help"], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0 and "simulate" in result.stdout


def test_verbose_shows_the_traceback_behind_an_error_line(tmp_path):
    missing = str(tmp_path / "missing.config")
    quiet = _run("-m", "tsoda", "stats", missing)
    verbose = _run("-m", "tsoda", "stats", missing, "--verbose")
    assert quiet.returncode == verbose.returncode == 2
    assert "Traceback" not in quiet.stderr
    assert "Traceback (most recent call last)" in verbose.stderr
    assert "error: " in verbose.stderr.splitlines()[-1]
