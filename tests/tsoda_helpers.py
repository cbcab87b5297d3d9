"""Helpers for training tests: a tiny pipeline.config and a synthetic VOC data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from auto_annotate import voc
from tests.helpers import RED, draw, save

TINY_CONFIG = """
model {{ ssd {{
  num_classes: 1
  image_resizer {{ fixed_shape_resizer {{ height: 128 width: 128 }} }}
  feature_extractor {{
    type: "ssd_mobilenet_v2_fpn_keras" depth_multiplier: 0.35 use_depthwise: true
    conv_hyperparams {{ activation: RELU_6 batch_norm {{ decay: 0.9 epsilon: 0.001 }} }}
    fpn {{ min_level: 3 max_level: 5 additional_layer_depth: 16 }}
  }}
  anchor_generator {{ multiscale_anchor_generator {{
    min_level: 3 max_level: 5 anchor_scale: 4.0 aspect_ratios: [1.0, 2.0, 0.5]
    scales_per_octave: 1 }} }}
  box_predictor {{ weight_shared_convolutional_box_predictor {{
    depth: 16 num_layers_before_predictor: 1 use_depthwise: true }} }}
  post_processing {{
    batch_non_max_suppression {{ score_threshold: 0.0 iou_threshold: 0.5
      max_detections_per_class: 10 max_total_detections: 10 }}
    score_converter: SIGMOID }}
  loss {{
    classification_loss {{ weighted_sigmoid_focal {{ alpha: 0.25 gamma: 1.5 }} }}
    localization_loss {{ weighted_smooth_l1 {{ delta: 0.1 }} }}
    localization_weight: 50.0 }}
}} }}
train_config {{
  batch_size: 4
  num_steps: {steps}
  data_augmentation_options {{ random_horizontal_flip {{ }} }}
  optimizer {{ adam_optimizer {{ learning_rate {{
    constant_learning_rate {{ learning_rate: 0.003 }} }} }} }}
  {fine_tune}
}}
train_input_reader {{
  label_map_path: "{label_map}"
  tf_record_input_reader {{ input_path: "{records}" }}
}}
"""


def write_tiny_config(path: Path, records: str, label_map: Path, steps: int = 30,
                      fine_tune: str = "") -> Path:
    path.write_text(TINY_CONFIG.format(steps=steps, records=records, label_map=label_map,
                                       fine_tune=fine_tune), encoding="utf-8")
    return path


def synthetic_voc(folder: Path, count: int = 8, seed: int = 0) -> Path:
    """Non-square images with one or two red patches each, labelled 'flame'."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        width, height = 160, 120
        rects = []
        for _ in range(1 + index % 2):
            w, h = rng.integers(25, 60), rng.integers(25, 50)
            x, y = rng.integers(0, width - w), rng.integers(0, height - h)
            rects.append((int(x), int(y), int(x + w), int(y + h)))
        save(folder / f"img{index}.png", draw((width, height), [(RED, r) for r in rects]))
        voc.write_voc(folder / f"img{index}.xml", voc.VocAnnotation(
            filename=f"img{index}.png", width=width, height=height,
            objects=tuple(voc.VocObject("flame", tuple(map(float, r))) for r in rects)))
    return folder


def train_tiny_detector(root: Path, height: int = 64, width: int = 128, steps: int = 200):
    """A tiny detector with a non-square input, trained on synthetic_voc until it finds the
    red patches with scores near 0.9 (about 20 s). Returns (config, model_dir, data_dir)."""
    from tsoda.data.tfrecords import write_tfrecords
    from tsoda.training.train import train

    data = synthetic_voc(root / "data", count=8)
    label_map = root / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "flame" }\n')
    write_tfrecords(data, data, label_map, root / "train.record")
    config = write_tiny_config(root / "tiny.config", str(root / "train.record*"), label_map,
                               steps=steps)
    config.write_text(config.read_text().replace("height: 128 width: 128",
                                                 f"height: {height} width: {width}"))
    train(config, root / "model", progress=False)
    return config, root / "model", data
