"""Anchor k-means: known clusters come back, ratios are shape-only, configs are rewritten
through the parsed message (header comments kept), bad flags and folders are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from auto_annotate import voc
from tsoda.config.pipeline import load_pipeline_config
from tsoda.data import anchors
from tsoda.data.anchors_cli import main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pipeline.config"


def clustered_shapes(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[10, 10], [40, 20], [30, 90]], dtype=float)
    return np.vstack([c * rng.uniform(0.95, 1.05, size=(50, 2)) for c in centres])


def test_kmeans_recovers_known_clusters():
    fit = anchors.kmeans_iou(clustered_shapes(), k=3)
    np.testing.assert_allclose(fit.centroids, [[10, 10], [40, 20], [30, 90]], rtol=0.06)
    assert fit.mean_iou > 0.85
    with pytest.raises(ValueError, match="fewer than k"):
        anchors.kmeans_iou(clustered_shapes()[:2], k=3)


def test_aspect_ratios_ignore_size():
    rng = np.random.default_rng(1)
    sizes = rng.uniform(5, 200, size=(300, 1))
    ratios = rng.choice([0.5, 2.0], size=(300, 1))
    shapes = np.hstack([sizes * np.sqrt(ratios), sizes / np.sqrt(ratios)])
    assert anchors.fit_aspect_ratios(shapes, 2) == [0.5, 2.0]


def test_best_anchor_scale_matches_the_box_sizes():
    shapes = np.full((20, 2), 64.0)  # square 64 px boxes; level 4 has stride 16
    by_scale = anchors.best_anchor_scale(shapes, 4, 4, 1, [1.0])
    assert max(by_scale, key=by_scale.get) == 4.0 and by_scale[4.0] == pytest.approx(1.0)


def test_box_shapes_scale_into_the_model_input(tmp_path):
    voc.write_voc(tmp_path / "a.xml", voc.VocAnnotation(
        "a.jpg", 640, 320, objects=(voc.VocObject("flame", (0, 0, 64, 32)),)))
    np.testing.assert_allclose(anchors.box_shapes(tmp_path, (320, 320)), [[32, 16]])
    np.testing.assert_allclose(anchors.box_shapes(tmp_path), [[64, 32]])


def test_write_keeps_the_header_comments_and_parses(tmp_path):
    config = tmp_path / "p.config"
    config.write_text(CONFIG.read_text())
    anchors.write_anchor_fields(config, [0.5, 1.5], 3.0)
    text = config.read_text()
    assert text.startswith(CONFIG.read_text().split("model {")[0])  # the comment block
    assert "# Anchors from scripts/kmeans_anchors.py" in text
    generator = load_pipeline_config(config).model.ssd.anchor_generator
    assert list(generator.multiscale_anchor_generator.aspect_ratios) == [0.5, 1.5]
    assert generator.multiscale_anchor_generator.anchor_scale == 3.0


def test_cli_prints_and_writes(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for index, (w, h) in enumerate(clustered_shapes()[::10]):
        x, y = rng.uniform(0, 100, size=2)
        voc.write_voc(tmp_path / f"{index}.xml", voc.VocAnnotation(
            f"{index}.jpg", 320, 320, objects=(voc.VocObject("flame", (x, y, x + w, y + h)),)))
    config = tmp_path / "p.config"
    config.write_text(CONFIG.read_text())
    assert main(["--xml_dir", str(tmp_path), "--k", "3", "--pipeline_config_path",
                 str(config), "--write"]) == 0
    out = capsys.readouterr().out
    assert "15 boxes, k = 3" in out and "best: anchor_scale" in out and "written:" in out
    assert main(["--xml_dir", str(tmp_path / "none"), "--k", "3"]) == 2


def test_write_ignores_commented_fields_and_writes_the_real_ones(tmp_path):
    text = CONFIG.read_text()
    real = "min_level: 4 max_level: 6 anchor_scale: 2.0\n"
    assert real in text
    config = tmp_path / "p.config"
    config.write_text(text.replace(real, "# aspect_ratios: [0.5, 1.0, 2.0]\n"
                                         "        # anchor_scale: 8.0\n        " + real))
    anchors.write_anchor_fields(config, [0.47, 1.3, 2.21], 3.0)
    generator = load_pipeline_config(config).model.ssd.anchor_generator
    multiscale = generator.multiscale_anchor_generator
    np.testing.assert_array_equal(multiscale.aspect_ratios, np.float32([0.47, 1.3, 2.21]))
    assert multiscale.anchor_scale == 3.0
    expected = load_pipeline_config(CONFIG)  # everything else is as it was
    expected.model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios[:] = [
        0.47, 1.3, 2.21]
    expected.model.ssd.anchor_generator.multiscale_anchor_generator.anchor_scale = 3.0
    assert load_pipeline_config(config) == expected


@pytest.mark.parametrize("args,message", [
    (["--k", "0"], "argument --k: must be at least 1, got 0"),
    (["--num_ratios", "-1"], "argument --num_ratios: must be at least 1, got -1"),
])
def test_cli_refuses_a_k_below_one_as_a_usage_error(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as stopped:
        main(["--xml_dir", str(tmp_path), *args])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_cli_names_a_missing_or_empty_xml_folder(tmp_path, capsys):
    assert main(["--xml_dir", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'none'}: folder does not exist\n"
    assert main(["--xml_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: no .xml file in the folder\n"


def test_write_restores_the_config_when_the_values_do_not_read_back(tmp_path, monkeypatch):
    import tsoda.config.pipeline

    config = tmp_path / "p.config"
    config.write_text(CONFIG.read_text())
    original = config.read_bytes()
    monkeypatch.setattr(tsoda.config.pipeline, "to_text", lambda message: CONFIG.read_text())
    with pytest.raises(ValueError, match=r"do not read back .* the original file is restored"):
        anchors.write_anchor_fields(config, [0.5, 1.5], 3.0)
    assert config.read_bytes() == original
