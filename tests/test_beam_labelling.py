"""``python -m auto_annotate.beam`` on the local runner writes what ``python -m
auto_annotate`` writes: the same XML bytes, the same manifest records, the same summary."""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("apache_beam")

from auto_annotate import voc
from auto_annotate.beam.cli import main as beam_main
from auto_annotate.cli import main as cli_main
from auto_annotate.manifest import MANIFEST_NAME, ManifestRecord, Status, read_manifest
from tests.helpers import BLUE, GREEN, LABEL_MAP, RED, build_color_model, draw, save

VERIFIED = voc.VocAnnotation("verified.png", 50, 40, objects=(
    voc.VocObject("smoke", (1.0, 2.0, 20.0, 30.0)),), verified=True)
NOT_COMPARED = ("time:", "scores manifest:", "review:")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Ten images: non-square, EXIF-rotated, gray, in a sub-folder, one corrupt, one with a
    class missing from the label map, one without detection, one verified; and a GIF."""
    root = tmp_path_factory.mktemp("beam")
    imgs = root / "imgs"
    save(imgs / "red.png", draw((120, 80), [(RED, (10, 5, 30, 25))]))
    save(imgs / "both.png", draw((90, 140), [(RED, (1, 2, 40, 50)), (BLUE, (50, 100, 90, 140))]))
    save(imgs / "none.png", draw((64, 48)))
    save(imgs / "rotated.jpg", draw((96, 64), [(RED, (8, 8, 40, 30))]), orientation=6,
         quality=95)
    save(imgs / "gray.png", draw((100, 60), [((200, 200, 200), (5, 5, 30, 30))]), mode="L")
    save(imgs / "green.png", draw((80, 70), [(GREEN, (3, 3, 30, 30)), (RED, (40, 40, 60, 60))]))
    save(imgs / "wide.png", draw((128, 40), [(BLUE, (60, 5, 120, 35))]))
    save(imgs / "verified.png", draw((50, 40), [(RED, (1, 1, 9, 9))]))
    save(imgs / "cam1" / "sub.png", draw((70, 50), [(BLUE, (5, 5, 20, 40))]))
    (imgs / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (imgs / "anim.gif").write_bytes(b"GIF89a")
    (root / "label_map.pbtxt").write_text(LABEL_MAP, encoding="utf-8")
    return {"root": root, "imgs": imgs, "label_map": root / "label_map.pbtxt",
            "model": build_color_model(root / "model")}


def _flags(data, xml: Path) -> list[str]:
    if not (xml / "verified.xml").exists():
        voc.write_voc(xml / "verified.xml", VERIFIED)  # reviewed before the first run
    return ["--model_path", str(data["model"]), "--label_map_path", str(data["label_map"]),
            "--imgs_path", str(data["imgs"]), "--xml_path", str(xml), "--recursive",
            "--quiet"]


def _summary(out: str) -> list[str]:
    return [line for line in out.splitlines() if not line.strip().startswith(NOT_COMPARED)]


def _labels(xml: Path) -> dict[str, bytes]:
    return {p.relative_to(xml).as_posix(): p.read_bytes() for p in sorted(xml.rglob("*.xml"))}


def _records(xml: Path) -> dict[str, ManifestRecord]:
    return {image: replace(record, time=None)
            for image, record in read_manifest(xml / MANIFEST_NAME).items()}


@pytest.fixture(scope="module")
def cli_run(data):
    xml, out = data["root"] / "cli", io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(_flags(data, xml))
    return {"xml": xml, "code": code, "out": out.getvalue()}


def _beam(data, xml: Path, capsys, *runner: str) -> tuple[int, str]:
    code = beam_main([*_flags(data, xml), "--runner", "DirectRunner", *runner])
    return code, capsys.readouterr().out


def test_beam_writes_the_cli_labels_manifest_and_summary(data, cli_run, capsys, monkeypatch):
    from auto_annotate.beam import run

    metrics, real_counters = [], run.counters
    monkeypatch.setattr(run, "counters", lambda *a: metrics.append(real_counters(*a))
                        or metrics[-1])
    xml = data["root"] / "beam"
    code, out = _beam(data, xml, capsys)
    assert {k: v for k, v in metrics[0].items() if v} == {  # the run's Beam metrics
        "found": 10, "annotated": 6, "empty": 2, "failed": 1, "box_errors": 1,
        "boxes_written": 7, "skipped_verified": 1, "ignored.gif": 1}
    assert code == cli_run["code"] == 1  # the corrupt image and the unknown class
    labels = _labels(xml)
    assert labels == _labels(cli_run["xml"])
    assert set(labels) == {"both.xml", "cam1/sub.xml", "green.xml", "red.xml", "rotated.xml",
                           "verified.xml", "wide.xml"}
    assert voc.read_voc(xml / "verified.xml") == VERIFIED  # untouched
    assert voc.read_voc(xml / "rotated.xml").width == 64  # the upright frame
    assert _records(xml) == _records(cli_run["xml"])
    assert _records(xml)["corrupt.jpg"].status is Status.FAILED
    assert _summary(out) == _summary(cli_run["out"])
    assert "corrupt.jpg: not a readable image" in out and "class id 7 is not in" in out
    assert "skipped:           1 (1 verified in LabelImg)" in out
    assert "ignored:           1 file(s) in unsupported image formats (1 .gif)" in out
    assert not list(xml.glob(".auto_annotate_beam-*"))  # the run's report is removed

    before = {p: p.stat().st_mtime_ns for p in xml.rglob("*.xml")}
    code, out = _beam(data, xml, capsys)  # a second run skips everything done
    assert code == 1 and "annotated:         0" in out and "failed:            1" in out
    assert "skipped:           9 (2 no detection in an earlier identical run, 6 label file " \
           "exists, 1 verified in LabelImg)" in out
    assert {p: p.stat().st_mtime_ns for p in xml.rglob("*.xml")} == before
    shards = sorted(xml.glob("auto_annotate_manifest-*.jsonl"))
    assert len({s.name.rsplit("-", 3)[0] for s in shards}) == 2  # one shard set per run
    assert _records(xml) == _records(cli_run["xml"])

    edited = voc.VocAnnotation("wide.png", 128, 40)  # a person saved it, not verified
    voc.write_voc(xml / "wide.xml", edited)
    code, out = _beam(data, xml, capsys, "--overwrite")  # the CLI's rules, via the manifest
    assert "annotated:         5" in out and "no detection:      2" in out
    assert "skipped:           2 (1 label file edited since auto_annotate wrote it, kept, " \
           "1 verified in LabelImg)" in out
    assert voc.read_voc(xml / "wide.xml") == edited
    assert voc.read_voc(xml / "verified.xml") == VERIFIED
    assert {k: v for k, v in _labels(xml).items() if k != "wide.xml"} == \
        {k: v for k, v in _labels(cli_run["xml"]).items() if k != "wide.xml"}


def test_beam_with_two_worker_processes_writes_the_same_labels(data, cli_run, capsys):
    xml = data["root"] / "beam2"
    code, out = _beam(data, xml, capsys, "--direct_num_workers", "2",
                      "--direct_running_mode", "multi_processing")
    assert code == 1
    assert _labels(xml) == _labels(cli_run["xml"])
    assert _records(xml) == _records(cli_run["xml"])
    assert _summary(out) == _summary(cli_run["out"])


def test_usage_errors_are_one_line_before_any_pipeline(data, tmp_path, capsys):
    flags = _flags(data, tmp_path / "xml")
    missing = flags.copy()
    missing[missing.index("--model_path") + 1] = str(tmp_path / "none")
    assert beam_main(missing) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "model does not exist" in err[0]
    assert not (tmp_path / "xml" / "predefined_classes.txt").exists()
    typo = [*flags, "--threshhold", "0.3", "--runner", "DirectRunner"]
    assert beam_main(typo) == 2  # Beam alone would drop it with a log line nobody sees
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unknown flag --threshhold: neither a flag of this command nor an "
                   "Apache Beam pipeline option"]
    assert not (tmp_path / "xml" / "predefined_classes.txt").exists()


def test_a_tflite_model_with_tta_labels_as_the_cli_does(data, capsys):
    from tests.helpers import build_color_tflite

    pytest.importorskip("ai_edge_litert")
    model = build_color_tflite(data["root"] / "color.tflite")
    flags = ["--model_path", str(model), "--label_map_path", str(data["label_map"]),
             "--imgs_path", str(data["imgs"]), "--recursive", "--tta", "flip", "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()):
        cli_main([*flags, "--xml_path", str(data["root"] / "tflite_cli")])
    code = beam_main([*flags, "--xml_path", str(data["root"] / "tflite_beam"),
                      "--runner", "DirectRunner"])
    assert code == 1 and "annotated:         7" in capsys.readouterr().out
    assert _labels(data["root"] / "tflite_beam") == _labels(data["root"] / "tflite_cli")
    records = _records(data["root"] / "tflite_beam")
    assert records == _records(data["root"] / "tflite_cli")
    assert records["both.png"].model.endswith("+tta:flip")
