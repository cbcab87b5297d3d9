"""pipeline.config: both shipped configs parse and map; unsupported fields name their path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tsoda.config.experiment import build_experiment
from tsoda.config.pipeline import (
    DESCRIPTOR_SET,
    load_pipeline_config,
    message_class,
    parse_pipeline_config,
)
from tsoda.errors import PipelineConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name,backbone,decoder,levels,size", [
    ("pipeline.config", "mobilenet", "fpn", (4, 6), (320, 320)),
    ("efficientdet_d0_slim.config", "efficientnet", "bifpn", (4, 7), (512, 512)),
    ("reference/ssd_mobilenet_v2_fpnlite_320.config", "mobilenet", "fpn", (3, 7), (384, 384)),
    ("reference/efficientdet_d0.config", "efficientnet", "bifpn", (3, 7), (512, 512)),
])
def test_shipped_configs_parse_and_map(name, backbone, decoder, levels, size):
    experiment = build_experiment(load_pipeline_config(CONFIGS / name), name)
    model = experiment.task.model
    assert (model.backbone.type, model.decoder.type) == (backbone, decoder)
    assert (model.min_level, model.max_level) == levels and experiment.input_hw == size
    assert model.num_classes == 2  # one class plus Model Garden's background slot
    assert experiment.batch_size == 8 and experiment.num_steps == 2500
    assert experiment.task.train_data.parser.aug_rand_hflip
    assert experiment.task.export_config.output_normalized_coordinates


def test_slim_config_values_reach_model_garden():
    experiment = build_experiment(load_pipeline_config(CONFIGS / "pipeline.config"))
    model, task = experiment.task.model, experiment.task
    assert model.decoder.fpn.num_filters == 96 and model.decoder.fpn.use_separable_conv
    assert (model.head.num_convs, model.head.num_filters) == (2, 96)
    assert model.anchor.aspect_ratios == pytest.approx([0.66, 1.24, 2.13])
    assert model.anchor.num_scales == 2
    assert model.anchor.anchor_size == 2.0
    assert model.detection_generator.max_num_detections == 20
    assert model.detection_generator.nms_iou_threshold == pytest.approx(0.5)
    assert model.backbone.mobilenet.filter_size_scale == 1.0
    assert model.norm_activation.activation == "relu6"
    assert task.losses.l2_weight_decay == pytest.approx(8e-5)
    parser = task.train_data.parser
    assert (parser.aug_scale_min, parser.aug_scale_max) == (0.75, 1.25)
    schedule = experiment.optimization.as_dict()
    assert schedule["optimizer"]["type"] == "sgd"
    assert schedule["learning_rate"]["cosine"]["decay_steps"] == 2500
    assert schedule["warmup"]["linear"]["warmup_steps"] == 200


@pytest.mark.parametrize("text,problem", [
    ("model { ssd { feature_extractor { typo: 1 } } }",
     "line 1: model.ssd.feature_extractor.typo is not supported"),
    ("model {\n faster_rcnn { }\n}", "line 2: model.faster_rcnn is not supported"),
    ("train_config { optimizer { rms_prop_optimizer { } } }",
     "train_config.optimizer.rms_prop_optimizer is not supported"),
    ("model { ssd { num_classes: x } }", "num_classes"),
    ("model { ssd { ", "missing for the message"),
])
def test_unsupported_or_malformed_fields_name_their_path(text, problem):
    with pytest.raises(PipelineConfigError, match=problem) as error:
        parse_pipeline_config(text, "my.config")
    assert "my.config" in str(error.value)


def _broken(replace: str, by: str) -> str:
    text = (CONFIGS / "pipeline.config").read_text()
    assert replace in text
    return text.replace(replace, by)


@pytest.mark.parametrize("old,new,problem", [
    ("min_level: 4 max_level: 6 anchor_scale", "min_level: 3 max_level: 6 anchor_scale",
     "multiscale_anchor_generator: levels 3-6 differ"),
    ("height: 320 width: 320", "height: 300 width: 300", "not a multiple of 2\\^max_level = 64"),
    ("score_converter: SIGMOID", "score_converter: SOFTMAX", "score_converter: must be SIGMOID"),
    ('type: "ssd_mobilenet_v2_fpn_keras"', 'type: "ssd_resnet50_v1_fpn_keras"',
     "feature_extractor.type: 'ssd_resnet50_v1_fpn_keras' is not supported"),
    ("num_classes: 1", "num_classes: 0", "num_classes: must be at least 1"),
    ("momentum_optimizer_value: 0.9\n    }", "momentum_optimizer_value: 0.9\n    }\n"
     "    use_moving_average: true moving_average_decay: 1.5",
     "moving_average_decay: must be in \\(0, 1\\)"),
])
def test_invalid_values_are_refused_with_their_path(old, new, problem):
    with pytest.raises(PipelineConfigError, match=problem):
        build_experiment(parse_pipeline_config(_broken(old, new)), "x.config")


def test_fine_tune_checkpoint_types():
    for kind, modules in (("classification", "backbone"), ("detection", "all")):
        text = _broken("max_number_of_boxes: 20", "max_number_of_boxes: 20 fine_tune_checkpoint:"
                       f' "/ckpt/ckpt-1" fine_tune_checkpoint_type: "{kind}"')
        task = build_experiment(parse_pipeline_config(text)).task
        assert (task.init_checkpoint, task.init_checkpoint_modules) == ("/ckpt/ckpt-1", modules)


def test_descriptor_set_matches_the_proto_source():
    """Every message and field named in pipeline.proto is in the committed descriptor set
    (rebuild it with scripts/build_protos.sh after editing the .proto)."""
    import re

    source = (DESCRIPTOR_SET.parent / "pipeline.proto").read_text()
    messages = re.findall(r"^message (\w+) \{", source, re.M)
    assert len(messages) > 40
    for name in messages:
        assert message_class(name).DESCRIPTOR.name == name
    declared = set(re.findall(r"^\s+(?:optional|repeated) [\w.]+ (\w+) =", source, re.M))
    declared |= set(re.findall(r"^\s+[A-Z]\w+ (\w+) = \d+;", source, re.M))
    in_descriptor = {f.name for name in messages for f in message_class(name).DESCRIPTOR.fields}
    assert declared <= in_descriptor and declared


def test_gradient_clipping_reaches_the_optimizer():
    from official.core import config_definitions
    from official.vision.tasks import retinanet as retinanet_task

    text = _broken("gradient_clipping_by_norm: 10.0", "gradient_clipping_by_norm: 2.5")
    experiment = build_experiment(parse_pipeline_config(text))
    assert experiment.optimization.as_dict()["optimizer"]["sgd"]["global_clipnorm"] == 2.5
    optimizer = retinanet_task.RetinaNetTask.create_optimizer(
        experiment.optimization, config_definitions.RuntimeConfig())
    assert optimizer.global_clipnorm == pytest.approx(2.5)
    unclipped = build_experiment(parse_pipeline_config(
        _broken("gradient_clipping_by_norm: 10.0", "")))
    assert unclipped.optimization.as_dict()["optimizer"]["sgd"]["global_clipnorm"] is None
    for name in ("pipeline.config", "efficientdet_lite0_slim.config",
                 "efficientdet_d0_slim.config"):
        shipped = build_experiment(load_pipeline_config(CONFIGS / name)).optimization
        assert shipped.as_dict()["optimizer"]["sgd"]["global_clipnorm"] == 10.0, name
    with pytest.raises(PipelineConfigError, match="gradient_clipping_by_norm: must be >= 0"):
        build_experiment(parse_pipeline_config(text.replace("2.5", "-1")), "x.config")


EXTRACTOR = "model.ssd.feature_extractor"


@pytest.mark.parametrize("name,overrides,num_filters", [
    ("pipeline.config", [], 96),
    ("pipeline.config", [f"{EXTRACTOR}.depth_multiplier=0.5"], 48),
    ("pipeline.config", [f"{EXTRACTOR}.depth_multiplier=0.5", f"{EXTRACTOR}.min_depth=64"], 64),
    ("efficientdet_lite0_slim.config", [], 48),
    ("efficientdet_lite0_slim.config", [f"{EXTRACTOR}.min_depth=64"], 64),
])
def test_pyramid_depth_as_the_object_detection_api_computes_it(name, overrides, num_filters):
    """FPN: max(int(additional_layer_depth * depth_multiplier), min_depth); BiFPN:
    max(num_filters, min_depth)."""
    pipeline = load_pipeline_config(CONFIGS / name, overrides, warn=False)
    decoder = build_experiment(pipeline).task.model.decoder
    assert getattr(decoder, decoder.type).num_filters == num_filters


@pytest.mark.parametrize("name,overrides,problem", [
    ("pipeline.config", [f"{EXTRACTOR}.pad_to_multiple=32"], None),
    ("pipeline.config", [f"{EXTRACTOR}.pad_to_multiple=48"],
     "pad_to_multiple: 320x320 must be a multiple of 48"),
    ("efficientdet_lite0_slim.config", [f"{EXTRACTOR}.use_depthwise=true"],
     "use_depthwise: not supported with bifpn"),
    ("pipeline.config", ["model.ssd.box_predictor.weight_shared_convolutional_box_predictor"
                         ".conv_hyperparams.activation=RELU"],
     "box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams: differs"),
])
def test_extractor_fields_model_garden_cannot_follow_are_refused(name, overrides, problem):
    pipeline = load_pipeline_config(CONFIGS / name, overrides, warn=False)
    if problem is None:
        build_experiment(pipeline, "x.config")
        return
    with pytest.raises(PipelineConfigError, match=problem):
        build_experiment(pipeline, "x.config")
