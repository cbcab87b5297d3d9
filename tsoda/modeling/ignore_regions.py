"""Ignore regions in training: boxes that are neither objects nor background.

An ignore region is a VOC object marked ``difficult`` (the loop writes its uncertain
detections that way, and LabelImg shows and edits them), carried into TFRecords as
``image/object/is_crowd = 1``. Stock Model Garden drops crowd boxes before anchor labelling
(``skip_crowd_during_training``), so everything inside them is trained as background: exactly
the missed-flame problem. Here they travel with the real boxes through every augmentation
(flip, scale jitter, crop, box-aware RandAugment) with class -1, and the anchor labeler takes
them out again: anchors lying mostly inside one (intersection over the anchor's area >=
``IGNORE_IOA``) get classification weight 0, unless they are a real box's positive. Nothing
else about matching changes, so images without ignore regions train exactly as before.
tsoda/modeling/task.py makes Model Garden's RetinaNet task build this parser.
"""

from __future__ import annotations

import tensorflow as tf
from official.vision.dataloaders import retinanet_input
from official.vision.ops import anchor, box_ops

IGNORE_IOA = 0.5
IGNORE_CLASS = -1


class IgnoreAwareAnchorLabeler(anchor.AnchorLabeler):
    """Model Garden's anchor labeler, with boxes of class -1 taken as ignore regions."""

    def __init__(self, *args, ignore_ioa: float = IGNORE_IOA, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ignore_ioa = ignore_ioa

    def label_anchors(self, anchor_boxes, gt_boxes, gt_labels, gt_attributes=None,
                      gt_weights=None):
        is_region = tf.equal(gt_labels[:, 0], IGNORE_CLASS)
        real = tf.where(tf.logical_not(is_region))[:, 0]
        attributes = {k: tf.gather(v, real) for k, v in (gt_attributes or {}).items()}
        weights = None if gt_weights is None else tf.gather(gt_weights, real)
        cls_targets, box_targets, att_targets, cls_weights, box_weights = super().label_anchors(
            anchor_boxes, tf.gather(gt_boxes, real), tf.gather(gt_labels, real), attributes,
            weights)
        flat = tf.concat([tf.reshape(v, [-1, 4]) for v in anchor_boxes.values()], axis=0)
        regions = tf.boolean_mask(gt_boxes, is_region)
        ioa = box_ops.bbox_intersection_over_area(flat[None], regions[None])[0]
        best = tf.reduce_max(tf.concat([ioa, tf.zeros_like(flat[:, :1])], axis=1), axis=1)
        ignored = tf.logical_and(best >= self.ignore_ioa, box_weights <= 0.0)
        return (cls_targets, box_targets, att_targets,
                tf.where(ignored, tf.zeros_like(cls_weights), cls_weights), box_weights)


class IgnoreAwareParser(retinanet_input.Parser):
    """Training parser that keeps crowd boxes as class -1 for the labeler above."""

    def _parse_train_data(self, data, anchor_labeler=None, input_anchor=None):
        data = dict(data)
        crowd = data["groundtruth_is_crowd"]
        classes = data["groundtruth_classes"]
        data["groundtruth_classes"] = tf.where(
            crowd, tf.constant(IGNORE_CLASS, classes.dtype), classes)
        data["groundtruth_is_crowd"] = tf.zeros_like(crowd)  # so they are not dropped
        labeler = anchor_labeler or IgnoreAwareAnchorLabeler(
            match_threshold=self._match_threshold,
            unmatched_threshold=self._unmatched_threshold,
            box_coder_weights=self._box_coder_weights)
        return super()._parse_train_data(data, anchor_labeler=labeler,
                                         input_anchor=input_anchor)
