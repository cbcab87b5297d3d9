"""End to end with a tiny config: TFRecords, train (and resume), export with the
contract, auto_annotate on the export, evaluate. Slow (about a minute)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tensorflow as tf

from auto_annotate import voc
from auto_annotate.cli import main as annotate_main
from tests.tsoda_helpers import synthetic_voc, write_tiny_config
from tsoda.data.tfrecords import write_tfrecords
from tsoda.training.evaluate import evaluate
from tsoda.training.export import export
from tsoda.training.train import RESOLVED_MODEL_GARDEN, RESOLVED_PIPELINE, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tsoda")
    data = synthetic_voc(root / "data", count=8)
    label_map = root / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "flame" }\n')
    report = write_tfrecords(data, data, label_map, root / "train.record", num_shards=2)
    assert report.ok and report.examples == 8
    config = write_tiny_config(root / "tiny.config", str(root / "train.record*"), label_map,
                               steps=120)
    first = train(config, root / "model", num_train_steps=5, progress=False, summary_every=5)
    second = train(config, root / "model", progress=False, summary_every=5)
    return root, data, label_map, config, first, second


def test_training_resumes_and_the_loss_falls(trained):
    root, _, _, _, first, second = trained
    assert (first.first_step, first.last_step) == (0, 5)
    assert (second.first_step, second.last_step) == (5, 120)
    assert second.final_loss < 0.6 * first.final_loss
    assert tf.train.latest_checkpoint(str(root / "model")).endswith("ckpt-120")
    assert (root / "model" / RESOLVED_PIPELINE).is_file()
    resolved = (root / "model" / RESOLVED_MODEL_GARDEN).read_text()
    assert "num_classes: 2" in resolved and "filter_size_scale: 0.34999" in resolved
    assert list((root / "model" / "train").glob("events.out.tfevents.*"))
    again = train(trained[3], root / "model", progress=False)  # nothing left to do
    assert again.first_step == again.last_step == 120


def test_export_follows_the_contract_and_labels_a_folder(trained, capsys):
    root, data, label_map, config, _, _ = trained
    saved_model = export(config, root / "model", root / "export")
    function = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    (name, spec), = function.structured_input_signature[1].items()
    assert (name, spec.dtype, spec.shape.as_list()) == ("input_tensor", tf.uint8,
                                                        [None, None, None, 3])
    outputs = function.structured_outputs
    assert outputs["detection_classes"].dtype == tf.float32
    assert outputs["num_detections"].dtype == tf.float32
    assert (root / "export" / "label_map.pbtxt").is_file()

    unlabelled = root / "unlabelled"
    unlabelled.mkdir()
    for index in (0, 1):
        shutil.copy(data / f"img{index}.png", unlabelled)
    code = annotate_main(["--saved_model_path", str(saved_model), "--label_map_path",
                          str(label_map), "--imgs_path", str(unlabelled), "--threshold", "0.3",
                          "--batch_size", "2", "--quiet"])
    assert code == 0, capsys.readouterr()
    for index in (0, 1):
        truth = voc.read_voc(data / f"img{index}.xml")
        written = voc.read_voc(unlabelled / f"img{index}.xml")
        assert (written.width, written.height) == (160, 120)
        best = max(_iou(box.box, t.box) for box in written.objects for t in truth.objects)
        assert best > 0.5  # boxes land on the red patch of this non-square image


def test_evaluate_reports_coco_metrics(trained):
    root, data, label_map, _, _, _ = trained
    export_dir = root / "export" / "saved_model"
    if not export_dir.exists():
        export(trained[3], root / "model", root / "export")
    metrics = evaluate(export_dir, label_map, data, root / "metrics.json")
    assert metrics.images == 8 and metrics.boxes == 12
    assert metrics.map50 > 0.5 and 0 <= metrics.map50_95 <= metrics.map50
    assert 0 < metrics.recall <= 1 and "flame" in metrics.per_class_map50
    assert (root / "metrics.json").is_file()


def _iou(a, b) -> float:
    a, b = np.array(a), np.array(b)
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    union = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter
    return float(inter / union)


@pytest.mark.parametrize("kind", ["detection", "classification"])
def test_warm_start_from_a_previous_round(trained, kind):
    root, _, label_map, _, first, second = trained
    checkpoint = tf.train.latest_checkpoint(str(root / "model"))
    config = write_tiny_config(
        root / f"warm_{kind}.config", str(root / "train.record*"), label_map, steps=1,
        fine_tune=f'fine_tune_checkpoint: "{checkpoint}" fine_tune_checkpoint_type: "{kind}"')
    warm = train(config, root / f"warm_{kind}", progress=False, summary_every=1)
    assert (warm.first_step, warm.last_step) == (0, 1)
    if kind == "detection":  # the whole detector: its first loss is the trained one
        assert warm.final_loss < 0.6 * first.final_loss
    else:  # the backbone only: the new head starts from scratch
        assert warm.final_loss > second.final_loss


def test_missing_warm_start_checkpoint_is_a_clear_error(trained, tmp_path):
    from tsoda.errors import TrainingError

    root, _, label_map, _, _, _ = trained
    config = write_tiny_config(tmp_path / "c.config", str(root / "train.record*"), label_map,
                               steps=1, fine_tune=f'fine_tune_checkpoint: "{tmp_path}/nope"')
    with pytest.raises(TrainingError, match="fine_tune_checkpoint not found"):
        train(config, tmp_path / "model", progress=False)


def test_no_training_data_is_a_clear_error(trained, tmp_path):
    from tsoda.errors import TrainingError

    config = write_tiny_config(tmp_path / "c.config", str(tmp_path / "none*"), trained[2])
    with pytest.raises(TrainingError, match="no training TFRecords match"):
        train(config, tmp_path / "model", progress=False)


def _exported(trained):
    root, _, _, config, _, _ = trained
    saved_model = root / "export" / "saved_model"
    if not saved_model.exists():
        export(config, root / "model", root / "export")
    return saved_model


def _fresh_model(config):
    from tsoda.config.experiment import build_experiment
    from tsoda.config.pipeline import load_pipeline_config
    from tsoda.training.train import build_model_and_task

    return build_model_and_task(build_experiment(load_pipeline_config(config), config))[1]


def test_warm_start_from_an_exported_saved_model(trained):
    from tsoda.modeling.warm_start import restore_from_saved_model

    root, _, label_map, config, first, _ = trained
    saved_model = _exported(trained)
    model, reference = _fresh_model(config), _fresh_model(config)
    checkpoint = tf.train.latest_checkpoint(str(root / "model"))
    tf.train.Checkpoint(**reference.checkpoint_items).read(checkpoint).expect_partial()
    assert restore_from_saved_model(model, saved_model) == len(reference.variables)
    for got, want in zip(model.variables, reference.variables, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=want.name)

    warm_config = write_tiny_config(
        root / "warm_saved_model.config", str(root / "train.record*"), label_map, steps=1,
        fine_tune=f'fine_tune_checkpoint: "{saved_model}" fine_tune_checkpoint_type: "detection"')
    warm = train(warm_config, root / "warm_saved_model", progress=False, summary_every=1)
    assert warm.final_loss < 0.6 * first.final_loss  # it starts where the exported model was


def test_warm_start_from_another_models_saved_model_is_a_clear_error(trained, tmp_path):
    from tsoda.errors import TrainingError
    from tsoda.modeling.warm_start import restore_from_saved_model

    root, _, _, config, _, _ = trained
    other = tmp_path / "other.config"
    other.write_text(config.read_text().replace("depth: 16 num_layers", "depth: 24 num_layers"))
    with pytest.raises(TrainingError, match=r"saved_model: its head does not match"):
        restore_from_saved_model(_fresh_model(other), _exported(trained))
    with pytest.raises(TrainingError, match="not a SavedModel made by tsoda export"):
        restore_from_saved_model(_fresh_model(config), root / "model")


def test_the_fast_nms_export_finds_what_model_gardens_default_finds(trained):
    from auto_annotate.images import decode_image
    from auto_annotate.model import SavedModelDetector

    root, data, _, config, _, _ = trained
    images = [decode_image(data / f"img{i}.png").upright for i in range(4)]
    found = {}
    for version in ("v2", "batched"):
        saved = export(config, root / "model", root / f"export_{version}", nms_version=version)
        graph = (saved / "saved_model.pb").read_bytes()
        assert (b"CombinedNonMaxSuppression" in graph) == (version == "batched")
        found[version] = SavedModelDetector(saved, 1).predict(images[:1]) + \
            SavedModelDetector(saved, 1).predict(images[1:2]) + \
            SavedModelDetector(saved, 1).predict(images[2:3])
    assert sum(len(d) for d in found["v2"]) >= 10  # score threshold 0: many boxes to sort
    for slow, fast in zip(found["v2"], found["batched"], strict=True):
        np.testing.assert_allclose(fast.scores, slow.scores, atol=1e-5)
        np.testing.assert_allclose(fast.boxes, slow.boxes, atol=1e-3)
        np.testing.assert_array_equal(fast.class_ids, slow.class_ids)
    with pytest.raises(ValueError, match="nms_version must be one of"):
        export(config, root / "model", root / "export_x", nms_version="fast")
