"""A tiny convolutional detector exported with the Object Detection API contract.

Random weights: it stands in for a real detector's cost shape (resize to a fixed internal
size, a few strided convolutions, a box head) so labelling throughput can be measured
without a trained model. Boxes and scores are meaningless but valid.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf


def build_tiny_cnn(export_dir: Path, batch: int | None = None, internal: int = 128,
                   filters: tuple[int, ...] = (8, 16, 32), detections: int = 10) -> Path:
    """Saves a uint8 [batch, None, None, 3] SavedModel that resizes to ``internal`` px."""
    generator = tf.random.Generator.from_seed(0)
    kernels, channels = [], 3
    for count in filters:
        kernels.append(tf.Variable(generator.normal([3, 3, channels, count]) * 0.2))
        channels = count
    head = tf.Variable(generator.normal([channels, detections * 6]) * 0.2)

    def detect(input_tensor):
        images = tf.image.resize(tf.cast(input_tensor, tf.float32) / 255.0, [internal, internal])
        features = images
        for kernel in kernels:
            features = tf.nn.relu(tf.nn.conv2d(features, kernel, strides=2, padding="SAME"))
        raw = tf.reshape(tf.reduce_mean(features, axis=[1, 2]) @ head, [-1, detections, 6])
        corner, size = tf.sigmoid(raw[..., 0:2]) * 0.7, tf.sigmoid(raw[..., 2:4]) * 0.3
        count = tf.shape(raw)[0]
        return {"detection_boxes": tf.concat([corner, corner + size], axis=-1),
                "detection_scores": tf.sigmoid(raw[..., 4]),
                "detection_classes": tf.ones_like(raw[..., 5]),
                "num_detections": tf.fill([count], float(detections))}

    module = tf.Module()
    module.variables_ = [*kernels, head]
    module.detect = tf.function(detect, input_signature=[
        tf.TensorSpec([batch, None, None, 3], tf.uint8, name="input_tensor")])
    tf.saved_model.save(module, str(export_dir),
                        signatures={"serving_default": module.detect.get_concrete_function()})
    return export_dir
