"""tsoda's RetinaNet task: Model Garden's, with ignore regions and a pseudo-label stream.

- Training input keeps ignore regions (tsoda/modeling/ignore_regions.py).
- With a :class:`PseudoStream`, every batch is hand images (hand and verified labels) plus a
  fixed share of pseudo-labelled images (labels the loop accepted), from two TFRecord sets.
  The pseudo part can get strong, box-aware augmentation (Model Garden's RandAugment for
  detection, without the colour inversions that destroy a flame's colour and without
  rotation, which loosens boxes), a loss weight, a lower weight for its background anchors,
  and no box regression. Each image carries its weights as labels; the loss below applies
  them and normalizes by the positive anchors of the images with a weight above 0, as Model
  Garden's loss normalizes by the batch's positive anchors.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import tensorflow as tf
import tf_keras
from official.vision.configs import common
from official.vision.dataloaders import retinanet_input
from official.vision.losses import focal_loss, loss_utils
from official.vision.tasks import retinanet as retinanet_task

from tsoda.modeling.ignore_regions import IgnoreAwareParser

WEIGHT_KEYS = ("image_weight", "background_weight", "box_scale")
STRONG_EXCLUDED = ["Invert", "Solarize", "SolarizeAdd", "Rotate"]


@dataclass(frozen=True)
class PseudoStream:
    """The pseudo-labelled part of each batch.

    Attributes:
        input_path: TFRecords of the pseudo-labelled images (a glob).
        share: the part of each batch they make up, in (0, 1).
        weight: their loss weight (hand images have 1).
        background_weight: extra factor on their background anchors' classification loss.
        box_loss: whether their boxes are regressed.
        strong_augment: RandAugment (2 ops, magnitude 10) on them.
    """

    input_path: str
    share: float = 0.5
    weight: float = 1.0
    background_weight: float = 1.0
    box_loss: bool = True
    strong_augment: bool = False

    def split(self, batch_size: int) -> tuple[int, int]:
        """(hand, pseudo) images per batch, at least one of each."""
        if batch_size < 2:
            raise ValueError("a pseudo stream needs train_config.batch_size >= 2")
        pseudo = min(max(round(batch_size * self.share), 1), batch_size - 1)
        return batch_size - pseudo, pseudo


@contextlib.contextmanager
def _parser_class(parser_class):
    """RetinaNetTask.build_inputs builds ``retinanet_input.Parser``: let it build ours."""
    original = retinanet_input.Parser
    retinanet_input.Parser = parser_class
    try:
        yield
    finally:
        retinanet_input.Parser = original


def _with_weights(dataset, weight: float, background: float, box_scale: float):
    def add(images, labels):
        count = tf.shape(images)[0]
        labels = dict(labels)
        for key, value in zip(WEIGHT_KEYS, (weight, background, box_scale), strict=True):
            labels[key] = tf.fill([count], tf.constant(value, tf.float32))
        return images, labels
    return dataset.map(add, num_parallel_calls=tf.data.AUTOTUNE)


def _concat(first, second):
    return tf.nest.map_structure(lambda a, b: tf.concat([a, b], axis=0), first, second)


class TsodaRetinaNetTask(retinanet_task.RetinaNetTask):
    """Model Garden's RetinaNet task with ignore regions and an optional pseudo stream."""

    def build_inputs(self, params, input_context=None):
        if not params.is_training:
            return super().build_inputs(params, input_context)
        with _parser_class(IgnoreAwareParser):
            return super().build_inputs(params, input_context)

    def build_streams(self, params, pseudo: PseudoStream):
        """Batches of hand images then pseudo images, each image with its loss weights."""
        hand_size, pseudo_size = pseudo.split(params.global_batch_size)
        hand = self.build_inputs(params.replace(global_batch_size=hand_size))
        parser = params.parser
        if pseudo.strong_augment:
            parser = parser.replace(aug_type=common.Augmentation(
                type="randaug", randaug=common.RandAugment(
                    num_layers=2, magnitude=10, exclude_ops=list(STRONG_EXCLUDED))))
        pseudo_data = self.build_inputs(params.replace(
            input_path=pseudo.input_path, global_batch_size=pseudo_size, parser=parser))
        return tf.data.Dataset.zip((
            _with_weights(hand, 1.0, 1.0, 1.0),
            _with_weights(pseudo_data, pseudo.weight, pseudo.background_weight,
                          1.0 if pseudo.box_loss else 0.0))).map(_concat)

    def build_losses(self, outputs, labels, aux_losses=None):
        if "image_weight" not in labels:
            return super().build_losses(outputs, labels, aux_losses)
        losses = self.task_config.losses
        classes = self.task_config.model.num_classes
        image = labels["image_weight"][:, None]
        positive = labels["box_weights"] > 0
        cls_weight = labels["cls_weights"] * image * tf.where(
            positive, 1.0, labels["background_weight"][:, None])
        box_weight = labels["box_weights"] * image * labels["box_scale"][:, None]
        # positive anchors of the images that count (weight > 0), each once: a weight is
        # not normalized away, and a weight of 0 leaves exactly the hand images' loss
        count = tf.reduce_sum(labels["box_weights"] * tf.cast(image > 0, tf.float32)) + 1.0
        cls_loss = focal_loss.FocalLoss(
            alpha=losses.focal_loss_alpha, gamma=losses.focal_loss_gamma,
            reduction=tf_keras.losses.Reduction.SUM)(
                y_true=tf.one_hot(loss_utils.multi_level_flatten(
                    labels["cls_targets"], last_dim=None), classes),
                y_pred=loss_utils.multi_level_flatten(outputs["cls_outputs"], last_dim=classes),
                sample_weight=cls_weight / count)
        box_loss = tf_keras.losses.Huber(losses.huber_loss_delta,
                                         reduction=tf_keras.losses.Reduction.SUM)(
            y_true=loss_utils.multi_level_flatten(labels["box_targets"], last_dim=4),
            y_pred=loss_utils.multi_level_flatten(outputs["box_outputs"], last_dim=4),
            sample_weight=box_weight / count)
        model_loss = cls_loss + losses.box_loss_weight * box_loss
        total = model_loss + (tf.reduce_sum(aux_losses) if aux_losses else 0.0)
        return losses.loss_weight * total, cls_loss, box_loss, model_loss
