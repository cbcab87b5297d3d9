"""Ignore regions: difficult VOC objects reach Model Garden's training parser as boxes whose
anchors get no classification loss, while real boxes train exactly as before."""

from __future__ import annotations

import numpy as np
import pytest

from auto_annotate import voc
from tests.helpers import RED, draw, save
from tests.tsoda_helpers import write_tiny_config

tf = pytest.importorskip("tensorflow")
pytest.importorskip("official.vision")

REAL = (8.0, 40.0, 40.0, 80.0)      # xyxy pixels in a 128x128 image, left half
REGION = (72.0, 16.0, 124.0, 112.0)  # right half


def _task_and_records(tmp_path, label_map_path, *, flip: bool, difficult: bool = True):
    from tsoda.config.experiment import build_experiment
    from tsoda.config.pipeline import load_pipeline_config
    from tsoda.data.tfrecords import write_tfrecords
    from tsoda.training.train import build_model_and_task

    data = tmp_path / "data"
    save(data / "a.png", draw((128, 128), [(RED, tuple(int(v) for v in REAL))]))
    voc.write_voc(data / "a.xml", voc.VocAnnotation("a.png", 128, 128, objects=(
        voc.VocObject("flame", REAL), voc.VocObject("flame", REGION, difficult=difficult))))
    report = write_tfrecords(data, data, label_map_path, tmp_path / "rec" / "train.record")
    config = write_tiny_config(tmp_path / "p.config", str(tmp_path / "rec" / "train.record*"),
                               label_map_path)
    if not flip:
        config.write_text(config.read_text().replace(
            "data_augmentation_options {{ random_horizontal_flip {{ }} }}".replace("{{", "{")
            .replace("}}", "}"), ""))
    experiment = build_experiment(load_pipeline_config(config), config)
    task, _ = build_model_and_task(experiment)
    return task, experiment, report


def _parsed(task, experiment, count: int):
    data = experiment.task.train_data.replace(global_batch_size=1, shuffle_buffer_size=1)
    return list(task.build_inputs(data).unbatch().take(count))


def _anchor_centers(labels) -> np.ndarray:
    flat = np.concatenate([np.reshape(v.numpy(), (-1, 4)) for v in
                           labels["anchor_boxes"].values()])  # yxyx pixels
    return np.stack([(flat[:, 1] + flat[:, 3]) / 2, (flat[:, 0] + flat[:, 2]) / 2], axis=1)


def _inside(points: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & \
        (points[:, 1] <= y1)


def test_difficult_objects_become_crowd_boxes_in_the_records(tmp_path, label_map_path):
    from tsoda.data.tfrecords import write_tfrecords

    data = tmp_path / "data"
    save(data / "a.png", draw((64, 48)))
    voc.write_voc(data / "a.xml", voc.VocAnnotation("a.png", 64, 48, objects=(
        voc.VocObject("flame", (1, 1, 20, 20)), voc.VocObject("flame", (30, 5, 60, 40), True))))
    report = write_tfrecords(data, data, label_map_path, tmp_path / "out" / "r.record")
    raw = next(iter(tf.data.TFRecordDataset([str(report.output_paths[0])])))
    feature = tf.train.Example.FromString(raw.numpy()).features.feature
    assert list(feature["image/object/is_crowd"].int64_list.value) == [0, 1]


def test_anchors_inside_an_ignore_region_get_no_classification_weight(tmp_path,
                                                                        label_map_path):
    task, experiment, _ = _task_and_records(tmp_path, label_map_path, flip=False)
    _, labels = _parsed(task, experiment, 1)[0]
    cls_weights, box_weights = labels["cls_weights"].numpy(), labels["box_weights"].numpy()
    centers = _anchor_centers(labels)
    ignored = cls_weights == 0
    assert ignored.sum() > 10
    assert _inside(centers[ignored], REGION).all()  # only anchors of the region are ignored
    assert box_weights[ignored].sum() == 0
    positives = box_weights > 0  # the real box's positives keep their weight
    assert positives.sum() > 0 and (cls_weights[positives] == 1).all()
    assert _inside(centers[positives], REAL).all()
    assert (cls_weights[~ignored] == 1).all()


def test_without_the_difficult_flag_the_region_is_a_real_box(tmp_path, label_map_path):
    task, experiment, _ = _task_and_records(tmp_path, label_map_path, flip=False,
                                            difficult=False)
    _, labels = _parsed(task, experiment, 1)[0]
    centers = _anchor_centers(labels)
    positives = labels["box_weights"].numpy() > 0
    assert _inside(centers[positives], REGION).any()
    assert (labels["cls_weights"].numpy() == 1).all()


def test_ignore_regions_move_with_the_image_under_flips(tmp_path, label_map_path):
    task, experiment, _ = _task_and_records(tmp_path, label_map_path, flip=True)
    mirrored = lambda b: (128 - b[2], b[1], 128 - b[0], b[3])  # noqa: E731
    seen = set()
    for _, labels in _parsed(task, experiment, 16):
        centers = _anchor_centers(labels)
        positives = labels["box_weights"].numpy() > 0
        ignored = labels["cls_weights"].numpy() == 0
        flipped = centers[positives, 0].mean() > 64
        seen.add(bool(flipped))
        region = mirrored(REGION) if flipped else REGION
        assert _inside(centers[ignored], region).all()
        assert _inside(centers[positives], mirrored(REAL) if flipped else REAL).all()
    assert seen == {False, True}
