"""The pseudo-label stream: batches of hand then pseudo images from their own records, each
image's loss weights applied exactly, strong augmentation that keeps the pipeline running."""

from __future__ import annotations

import numpy as np
import pytest

from auto_annotate import voc
from tests.helpers import RED, draw, save
from tests.tsoda_helpers import write_tiny_config

tf = pytest.importorskip("tensorflow")
pytest.importorskip("official.vision")


def _records(folder, label_map_path, box):
    from tsoda.data.tfrecords import write_tfrecords

    for index in range(3):
        save(folder / f"i{index}.png", draw((128, 128), [(RED, box)]))
        voc.write_voc(folder / f"i{index}.xml", voc.VocAnnotation(
            f"i{index}.png", 128, 128, objects=(voc.VocObject("flame", box),)))
    write_tfrecords(folder, folder, label_map_path, folder / "rec" / "r.record")
    return str(folder / "rec" / "r.record*")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tsoda.config.experiment import build_experiment
    from tsoda.config.pipeline import load_pipeline_config
    from tsoda.training.train import build_model_and_task

    root = tmp_path_factory.mktemp("pseudo")
    label_map = root / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "flame" }\n')
    hand = _records(root / "hand", label_map, (8, 40, 40, 80))       # left half
    pseudo = _records(root / "pseudo", label_map, (80, 40, 120, 80))  # right half
    config = write_tiny_config(root / "p.config", hand, label_map)
    config.write_text(config.read_text().replace(
        "data_augmentation_options { random_horizontal_flip { } }", ""))
    experiment = build_experiment(load_pipeline_config(config), config)
    task, model = build_model_and_task(experiment)
    return task, model, experiment, pseudo, config


def _batch(setup, **stream):
    from tsoda.modeling.task import PseudoStream

    task, _, experiment, pseudo, _ = setup
    return next(iter(task.build_streams(experiment.task.train_data,
                                        PseudoStream(pseudo, **stream))))


def _positive_x(labels, row: int) -> float:
    flat = np.concatenate([np.reshape(v[row].numpy(), (-1, 4)) for v in
                           labels["anchor_boxes"].values()])
    positive = labels["box_weights"][row].numpy() > 0
    return float(((flat[positive, 1] + flat[positive, 3]) / 2).mean())


def test_batches_hold_hand_images_then_the_pseudo_share(setup):
    images, labels = _batch(setup, share=0.25, weight=2.0, background_weight=0.5,
                            box_loss=False)
    assert images.shape[0] == 4  # the tiny config's batch: 3 hand + 1 pseudo
    assert labels["image_weight"].numpy().tolist() == [1, 1, 1, 2]
    assert labels["background_weight"].numpy().tolist() == [1, 1, 1, 0.5]
    assert labels["box_scale"].numpy().tolist() == [1, 1, 1, 0]
    assert all(_positive_x(labels, row) < 64 for row in range(3))  # hand: left boxes
    assert _positive_x(labels, 3) > 64  # pseudo: right boxes


def _losses(setup, labels, images):
    task, model, _, _, _ = setup
    outputs = model(images, training=False)
    total, cls_loss, box_loss, _ = task.build_losses(outputs, labels, model.losses)
    return float(total), float(cls_loss), float(box_loss)


def test_unit_weights_give_model_gardens_own_loss(setup):
    task, model, _, _, _ = setup
    images, labels = _batch(setup, share=0.5)
    plain = {k: v for k, v in labels.items() if k not in
             ("image_weight", "background_weight", "box_scale")}
    outputs = model(images, training=False)
    ours = task.build_losses(outputs, labels, model.losses)
    theirs = super(type(task), task).build_losses(outputs, plain, model.losses)
    np.testing.assert_allclose([float(v) for v in ours], [float(v) for v in theirs], rtol=1e-5)


def test_pseudo_weight_scales_the_pseudo_part_and_box_loss_can_be_off(setup):
    images, labels = _batch(setup, share=0.5)

    def weighted(weight, box_scale=1.0, background=1.0):
        changed = dict(labels)
        pseudo = np.array([0, 0, 1, 1], dtype=bool)
        changed["image_weight"] = tf.constant(np.where(pseudo, weight, 1.0), tf.float32)
        changed["box_scale"] = tf.constant(np.where(pseudo, box_scale, 1.0), tf.float32)
        changed["background_weight"] = tf.constant(np.where(pseudo, background, 1.0),
                                                   tf.float32)
        return _losses(setup, changed, images)

    zero, one, two, three = (weighted(w) for w in (0.0, 1.0, 2.0, 3.0))
    for part in (1, 2):  # above 0, classification and box loss are linear in the weight
        assert three[part] - two[part] == pytest.approx(two[part] - one[part], rel=1e-4)
        assert two[part] > one[part]
    no_box, half_box = weighted(1.0, box_scale=0.0), weighted(1.0, box_scale=0.5)
    assert no_box[2] < one[2]  # the pseudo boxes no longer regress ...
    assert half_box[2] == pytest.approx((no_box[2] + one[2]) / 2, rel=1e-4)  # (linearly)
    assert no_box[1] == pytest.approx(one[1], rel=1e-5)   # ... and classification is as before
    less_background = weighted(1.0, background=0.0)
    assert zero[1] < less_background[1] < one[1]  # pseudo positives still count


def test_strong_augmentation_changes_the_pseudo_images_only(setup):
    plain, _ = _batch(setup, share=0.5)
    changed = 0
    for _ in range(4):
        images, labels = _batch(setup, share=0.5, strong_augment=True)
        np.testing.assert_allclose(images[:2].numpy(), plain[:2].numpy())  # hand: as before
        changed += not np.allclose(images[2:].numpy(), plain[2:].numpy())
        assert labels["box_weights"].numpy()[:2].sum() > 0
    assert changed >= 2  # two random ops of magnitude 10 rarely leave an image as it was


@pytest.mark.slow
def test_training_runs_with_a_pseudo_stream(setup, tmp_path):
    from tsoda.modeling.task import PseudoStream
    from tsoda.training.train import train

    _, _, _, pseudo, config = setup
    result = train(config, tmp_path / "model", 3, progress=False, summary_every=1,
                   pseudo=PseudoStream(pseudo, share=0.5, weight=2.0, box_loss=False,
                                       strong_augment=True))
    assert result.last_step == 3 and np.isfinite(result.final_loss)


def test_a_pseudo_weight_of_zero_leaves_exactly_the_hand_images_loss(setup):
    task, model, _, _, _ = setup
    images, labels = _batch(setup, share=0.5, weight=0.0)
    outputs = model(images, training=False)
    ours = task.build_losses(outputs, labels, model.losses)
    hand = {k: tf.nest.map_structure(lambda t: t[:2], v) for k, v in labels.items()
            if k not in ("image_weight", "background_weight", "box_scale")}
    hand_outputs = tf.nest.map_structure(lambda t: t[:2], outputs)
    theirs = super(type(task), task).build_losses(hand_outputs, hand, model.losses)
    np.testing.assert_allclose([float(v) for v in ours], [float(v) for v in theirs], rtol=1e-5)
