"""``tsoda export``: a trained checkpoint as a SavedModel with the detection contract.

The SavedModel's ``serving_default`` takes ``input_tensor`` uint8 [None, None, None, 3]
(any batch, any size: the model resizes inside) and returns ``detection_boxes``
normalized ``ymin, xmin, ymax, xmax`` relative to the input image, ``detection_scores``,
``detection_classes`` as float label-map ids and ``num_detections`` as float, so that
``python -m auto_annotate`` uses it unchanged.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import tensorflow as tf

from tsoda.errors import TrainingError
from tsoda.experiment import build_experiment
from tsoda.pipeline_config import load_pipeline_config, to_text

LOG = logging.getLogger(__name__)
INPUT_NAME = "input_tensor"


def latest_checkpoint(model_dir: str | Path) -> str:
    """The newest checkpoint prefix in ``model_dir``; raises TrainingError if none."""
    found = tf.train.latest_checkpoint(str(model_dir))
    if found is None:
        raise TrainingError(model_dir, "no checkpoint found; run tsoda train first")
    return found


def export(pipeline_config_path: str | Path, model_dir: str | Path,
           output_dir: str | Path) -> Path:
    """Exports the latest checkpoint of ``model_dir`` to ``output_dir/saved_model``.

    The pipeline.config and its label map are copied beside it. Returns the SavedModel path.
    """
    from official.core import config_definitions
    from official.vision.serving import export_saved_model_lib

    pipeline = load_pipeline_config(pipeline_config_path)
    experiment = build_experiment(pipeline, pipeline_config_path)
    checkpoint = latest_checkpoint(model_dir)
    output_dir = Path(output_dir)
    saved_model = output_dir / "saved_model"
    if saved_model.exists():
        shutil.rmtree(saved_model)
    output_dir.mkdir(parents=True, exist_ok=True)
    params = config_definitions.ExperimentConfig(task=experiment.task)
    export_saved_model_lib.export_inference_graph(
        input_type="image_tensor", batch_size=None, input_image_size=list(experiment.input_hw),
        params=params, checkpoint_path=checkpoint, export_dir=str(output_dir),
        export_saved_model_subdir="saved_model", input_name=INPUT_NAME)
    (output_dir / "pipeline.config").write_text(to_text(pipeline), encoding="utf-8")
    label_map = Path(experiment.label_map_path) if experiment.label_map_path else None
    if label_map is not None and label_map.is_file():
        shutil.copyfile(label_map, output_dir / "label_map.pbtxt")
    LOG.info("exported %s to %s", checkpoint, saved_model)
    return saved_model
