"""``python -m auto_annotate`` end to end with a real tiny SavedModel."""

from __future__ import annotations

import json

import pytest
from libs.pascal_voc_io import PascalVocReader

from auto_annotate import voc
from auto_annotate.cli import main
from tests.helpers import BLUE, GREEN, RED, draw, save


@pytest.fixture()
def folder(tmp_path):
    imgs = tmp_path / "imgs"
    save(imgs / "red.png", draw((120, 80), [(RED, (10, 5, 30, 25))]))
    save(imgs / "both.png", draw((90, 140), [(RED, (1, 2, 40, 50)), (BLUE, (50, 100, 90, 140))]))
    save(imgs / "none.png", draw((64, 48)))
    return imgs


def run(models, label_map_path, imgs, *flags, model="dynamic"):
    return main(["--saved_model_path", str(models[model]), "--label_map_path",
                 str(label_map_path), "--imgs_path", str(imgs), "--quiet", *flags])


def boxes_of(path):
    annotation = voc.read_voc(path)
    return [(o.name, voc.disk_box(o.box, annotation.width, annotation.height))
            for o in annotation.objects]


def test_labels_a_folder_with_one_class_per_box(models, label_map_path, folder, capsys):
    assert run(models, label_map_path, folder, "--batch_size", "2") == 0
    assert boxes_of(folder / "red.xml") == [("flame", (11, 6, 30, 25))]
    assert boxes_of(folder / "both.xml") == [("flame", (2, 3, 40, 50)),
                                             ("smoke", (51, 101, 90, 140))]
    both = voc.read_voc(folder / "both.xml")
    assert (both.width, both.height, both.filename, both.folder) == (90, 140, "both.png", "imgs")
    assert not (folder / "none.xml").exists()
    assert (folder / "predefined_classes.txt").read_text() == "flame\nsmoke\n"
    out = capsys.readouterr().out
    assert "images found:      3" in out and "annotated:         2" in out
    assert "no detection:      1" in out and "boxes written:     3" in out
    assert "python -m auto_annotate.review" in out


def test_labelimg_reader_loads_every_file_with_the_same_boxes(models, label_map_path, folder):
    run(models, label_map_path, folder, "--write_empty")
    for xml_path in sorted(folder.glob("*.xml")):
        ours = [(name, (box[0], box[1]), (box[2], box[3])) for name, box in boxes_of(xml_path)]
        theirs = [(label, points[0], points[2])
                  for label, points, *_ in PascalVocReader(str(xml_path)).get_shapes()]
        assert ours == theirs
    assert voc.read_voc(folder / "none.xml").objects == ()


def test_manifest_keeps_scores_and_lists_images_without_detections(models, label_map_path,
                                                                   folder):
    run(models, label_map_path, folder, "--threshold", "0.8")
    lines = (folder / "auto_annotate_manifest.jsonl").read_text().splitlines()
    records = {r["image"]: r for r in map(json.loads, lines)}
    assert records["both.png"]["scores"] == [0.9] and records["both.png"]["classes"] == ["flame"]
    assert records["both.png"]["below_threshold"] == 1
    assert records["both.png"]["max_score_below"] == pytest.approx(0.7)
    assert records["none.png"]["status"] == "empty" and records["none.png"]["xml"] is None
    assert records["red.png"]["boxes"] == [[11, 6, 30, 25]]


@pytest.mark.parametrize("threshold,smoke_kept", [("0.7", True), ("0.71", False)])
def test_threshold_is_inclusive(models, label_map_path, folder, threshold, smoke_kept):
    run(models, label_map_path, folder, "--threshold", threshold)
    assert ("smoke" in {name for name, _ in boxes_of(folder / "both.xml")}) == smoke_kept


@pytest.mark.parametrize("flags,message", [
    (["--threshold", "1.5"], "must be in [0, 1]"),
    (["--threshold", "-0.1"], "must be in [0, 1]"),
    (["--threshold", "high"], "not a number"),
    (["--batch_size", "0"], "must be at least 1"),
])
def test_usage_errors_exit_2(models, label_map_path, folder, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        run(models, label_map_path, folder, *flags)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("what", ["imgs", "model", "label_map", "signature"])
def test_bad_paths_and_models_are_one_line_errors(models, label_map_path, folder, tmp_path,
                                                  capsys, what):
    args = {"imgs": folder, "model": models["dynamic"], "label_map": label_map_path}
    if what == "signature":
        (tmp_path / "bad_model").mkdir()
        (tmp_path / "bad_model" / "saved_model.pb").write_bytes(b"junk")
        args["model"] = tmp_path / "bad_model"
    else:
        args[what] = tmp_path / "missing"
    code = main(["--saved_model_path", str(args["model"]), "--label_map_path",
                 str(args["label_map"]), "--imgs_path", str(args["imgs"]), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert str(args["model" if what == "signature" else what]) in err[0]


def test_unknown_class_id_is_reported_for_that_box_only(models, label_map_path, tmp_path,
                                                        capsys):
    imgs = tmp_path / "imgs"
    save(imgs / "mixed.png", draw((100, 60), [(RED, (5, 5, 20, 20)), (GREEN, (40, 30, 90, 55))]))
    assert run(models, label_map_path, imgs) == 1
    assert boxes_of(imgs / "mixed.xml") == [("flame", (6, 6, 20, 20))]
    out = capsys.readouterr().out
    assert "class id 7 is not in the label map" in out and "boxes dropped:     1" in out


def test_bad_images_are_reported_and_the_rest_goes_on(models, label_map_path, folder, capsys):
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    data = (folder / "red.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    assert run(models, label_map_path, folder) == 1
    out = capsys.readouterr().out
    assert "failed:            2" in out and "annotated:         2" in out
    assert "corrupt.jpg: not a readable image" in out and "truncated.png: cannot decode" in out
    assert (folder / "red.xml").exists() and not (folder / "corrupt.xml").exists()


def test_colliding_stems_are_reported_not_overwritten(models, label_map_path, folder, capsys):
    save(folder / "red.jpg", draw((30, 30), [(RED, (0, 0, 5, 5))]))
    assert run(models, label_map_path, folder) == 1
    assert not (folder / "red.xml").exists()
    out = capsys.readouterr().out
    assert "red.xml would be shared by red.jpg, red.png" in out


def test_fixed_size_and_batch1_models_through_the_cli(models, label_map_path, folder, tmp_path):
    for variant in ("batch1", "fixed_size", "string", "float"):
        out = tmp_path / variant
        assert run(models, label_map_path, folder, "--xml_path", str(out), "--batch_size", "4",
                   model=variant) == 0
        names = [name for name, _ in boxes_of(out / "both.xml")]
        assert names == ["flame", "smoke"], variant
        assert not (folder / "red.xml").exists()


def test_progress_bar_and_full_stem_names(models, label_map_path, tmp_path, capsys):
    imgs = tmp_path / "imgs"
    save(imgs / "cam.2024.05.png", draw((50, 40), [(RED, (1, 1, 9, 9))]))
    assert main(["--saved_model_path", str(models["dynamic"]), "--label_map_path",
                 str(label_map_path), "--imgs_path", str(imgs)]) == 0
    assert (imgs / "cam.2024.05.xml").exists()
    assert "annotating: 100%" in capsys.readouterr().err


def test_python_api_checks_arguments_before_loading_the_model(models, label_map_path, folder,
                                                              tmp_path):
    from auto_annotate import AnnotateError, AutoAnnotate, LabelMapError

    with pytest.raises(ValueError, match="batch size"):
        AutoAnnotate(models["dynamic"], label_map_path, folder, batch_size=0)
    with pytest.raises(ValueError, match="threshold"):
        AutoAnnotate(models["dynamic"], label_map_path, folder, threshold=2)
    with pytest.raises(AnnotateError, match=r"model does not exist; expected a SavedModel "
                                            r"folder .* or a \.tflite file"):
        AutoAnnotate(tmp_path / "none", label_map_path, folder)
    with pytest.raises(LabelMapError):
        AutoAnnotate(models["dynamic"], tmp_path / "none.pbtxt", folder)
    summary = AutoAnnotate(models["batch1"], label_map_path, folder, tmp_path / "out",
                           progress=False).generate_annotations()
    assert (summary.annotated, summary.empty, summary.boxes_written) == (2, 1, 3)


def test_tta_labels_with_fused_views_and_is_its_own_run(models, label_map_path, folder,
                                                        capsys):
    assert run(models, label_map_path, folder, "--tta", "flip") == 0
    # the colour model finds each patch in both views: the same boxes and scores
    assert boxes_of(folder / "both.xml") == [("flame", (2, 3, 40, 50)),
                                             ("smoke", (51, 101, 90, 140))]
    records = [json.loads(line) for line in
               (folder / "auto_annotate_manifest.jsonl").read_text().splitlines()]
    both = next(r for r in records if r["image"] == "both.png")
    assert both["scores"] == pytest.approx([0.9, 0.7]) and both["model"].endswith("+tta:flip")
    with pytest.raises(SystemExit) as exit_info:
        run(models, label_map_path, folder, "--tta", "rotate")
    assert exit_info.value.code == 2
    assert "unknown TTA view(s) rotate" in capsys.readouterr().err
