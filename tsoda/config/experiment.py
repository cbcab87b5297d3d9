"""Mapping a parsed pipeline.config onto a TF Model Garden RetinaNet experiment.

An SSD with a feature pyramid in Object Detection API terms is a RetinaNet in Model
Garden's. Every supported field is mapped here, in one place; semantic problems (levels
that disagree, an input size the pyramid cannot divide, unsupported values) are refused
with the field's path before any training starts. The declared fields not mapped here are
listed, with their reasons, in tsoda/config/unmapped.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from official.modeling import optimization
from official.vision.configs import backbones, common
from official.vision.configs import retinanet as rcfg

from tsoda.config.unmapped import check_fixed
from tsoda.errors import PipelineConfigError
from tsoda.modeling import bifpn
from tsoda.modeling.backbones import efficientnet_lite

# feature_extractor.type -> (Model Garden backbone, decoder)
EXTRACTORS = {
    "ssd_mobilenet_v2_fpn_keras": ("mobilenet", "fpn"),
    "ssd_efficientnet-b0_bifpn_keras": ("efficientnet", "bifpn"),
    "ssd_efficientnet-lite0_bifpn_keras": ("efficientnet_lite", "bifpn"),
}
ACTIVATIONS = {"RELU": "relu", "RELU_6": "relu6", "SWISH": "swish"}
PREDICTOR = "model.ssd.box_predictor.weight_shared_convolutional_box_predictor"


@dataclasses.dataclass
class TsodaRetinaNet(rcfg.RetinaNet):
    """Model Garden's RetinaNet config whose decoder may also be our BiFPN and whose
    backbone may also be our EfficientNet-Lite."""

    backbone: efficientnet_lite.Backbone = dataclasses.field(
        default_factory=efficientnet_lite.Backbone)
    decoder: bifpn.Decoder = dataclasses.field(default_factory=bifpn.Decoder)


@dataclasses.dataclass
class TsodaRetinaNetTask(rcfg.RetinaNetTask):
    model: TsodaRetinaNet = dataclasses.field(default_factory=TsodaRetinaNet)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything training needs: the Model Garden task, optimizer, and loop settings."""

    task: TsodaRetinaNetTask
    optimization: optimization.OptimizationConfig
    batch_size: int
    num_steps: int
    input_hw: tuple[int, int]
    label_map_path: str


class _Checker:
    """Raises PipelineConfigError naming the config file and a field path."""

    def __init__(self, source: str | Path) -> None:
        self.source = source

    def require(self, condition: bool, field: str, problem: str) -> None:
        if not condition:
            raise PipelineConfigError(self.source, f"{field}: {problem}")


def _levels(ssd, check: _Checker) -> tuple[int, int]:
    extractor = ssd.feature_extractor
    pyramid = extractor.bifpn if extractor.HasField("bifpn") else extractor.fpn
    check.require(extractor.HasField("fpn") or extractor.HasField("bifpn"),
                  "model.ssd.feature_extractor", "needs an fpn { } or bifpn { } block")
    anchors = ssd.anchor_generator.multiscale_anchor_generator
    check.require(ssd.anchor_generator.HasField("multiscale_anchor_generator"),
                  "model.ssd.anchor_generator", "needs multiscale_anchor_generator { }")
    check.require((anchors.min_level, anchors.max_level) == (pyramid.min_level, pyramid.max_level),
                  "model.ssd.anchor_generator.multiscale_anchor_generator",
                  f"levels {anchors.min_level}-{anchors.max_level} differ from the feature "
                  f"pyramid's {pyramid.min_level}-{pyramid.max_level}")
    check.require(2 <= pyramid.min_level <= pyramid.max_level <= 8,
                  "model.ssd.feature_extractor", "levels must satisfy 2 <= min <= max <= 8")
    return pyramid.min_level, pyramid.max_level


def _input_hw(ssd, max_level: int, check: _Checker) -> tuple[int, int]:
    check.require(ssd.image_resizer.HasField("fixed_shape_resizer"), "model.ssd.image_resizer",
                  "needs fixed_shape_resizer { height width }")
    size = ssd.image_resizer.fixed_shape_resizer
    stride = 2 ** max_level
    check.require(size.height % stride == 0 and size.width % stride == 0,
                  "model.ssd.image_resizer.fixed_shape_resizer",
                  f"{size.height}x{size.width} is not a multiple of 2^max_level = {stride}; "
                  "Model Garden would pad every image up to the next multiple (more work "
                  "for nothing): choose the size and the levels together")
    multiple = ssd.feature_extractor.pad_to_multiple
    check.require(multiple >= 1 and size.height % multiple == 0 and size.width % multiple == 0,
                  "model.ssd.feature_extractor.pad_to_multiple",
                  f"{size.height}x{size.width} must be a multiple of {multiple} (Model Garden "
                  "pads to multiples of 2^max_level only)")
    return size.height, size.width


def _regularization(ssd, check: _Checker) -> float:
    """Model Garden's l2_weight_decay (it applies l2(decay / 2); OD API weights are l2(w)).

    Model Garden has one weight decay, batch norm and activation for the whole model: the
    box predictor's conv_hyperparams, if set, must be the feature extractor's."""
    hyper = ssd.feature_extractor.conv_hyperparams
    predictor = ssd.box_predictor.weight_shared_convolutional_box_predictor
    same = not predictor.HasField("conv_hyperparams") or predictor.conv_hyperparams == hyper
    check.require(same, f"{PREDICTOR}.conv_hyperparams",
                  "differs from model.ssd.feature_extractor.conv_hyperparams; Model Garden "
                  "applies one weight decay, batch norm and activation to the whole model")
    regularizer = hyper.regularizer
    return 2.0 * regularizer.l2_regularizer.weight \
        if regularizer.HasField("l2_regularizer") else 0.0


def _activation(hyper) -> str:
    return ACTIVATIONS.get(hyper.Activation.Name(hyper.activation), "relu")


def _norm_activation(ssd) -> common.NormActivation:
    hyper = ssd.feature_extractor.conv_hyperparams
    norm = hyper.batch_norm
    return common.NormActivation(
        activation=_activation(hyper), use_sync_bn=False,
        norm_momentum=norm.decay if hyper.HasField("batch_norm") else 0.99,
        norm_epsilon=norm.epsilon if hyper.HasField("batch_norm") else 0.001)


def _backbone(extractor, check: _Checker) -> efficientnet_lite.Backbone:
    check.require(extractor.type in EXTRACTORS, "model.ssd.feature_extractor.type",
                  f"{extractor.type!r} is not supported; supported: {sorted(EXTRACTORS)}")
    kind, decoder = EXTRACTORS[extractor.type]
    check.require(extractor.HasField(decoder), "model.ssd.feature_extractor",
                  f"type {extractor.type!r} needs a {decoder} {{ }} block")
    if kind == "mobilenet":
        return efficientnet_lite.Backbone(type="mobilenet", mobilenet=backbones.MobileNet(
            model_id="MobileNetV2", filter_size_scale=extractor.depth_multiplier))
    if kind == "efficientnet_lite":
        check.require(extractor.depth_multiplier == 1.0,
                      "model.ssd.feature_extractor.depth_multiplier",
                      "EfficientNet-Lite0 supports depth_multiplier 1.0 only")
        return efficientnet_lite.Backbone(
            type="efficientnet_lite",
            efficientnet_lite=efficientnet_lite.EfficientNetLite(model_id="lite0"))
    check.require(extractor.depth_multiplier == 1.0, "model.ssd.feature_extractor.depth_multiplier",
                  "EfficientNet-B0 supports depth_multiplier 1.0 only")
    return efficientnet_lite.Backbone(type="efficientnet", efficientnet=backbones.EfficientNet(
        model_id="b0", se_ratio=0.25))


def _decoder(extractor, check: _Checker) -> bifpn.Decoder:
    """FPN or BiFPN, their depths as the Object Detection API computes them (min_depth, and
    depth_multiplier for the FPN); the BiFPN's fusion activation is the feature extractor's."""
    if extractor.HasField("fpn"):
        depth = int(extractor.fpn.additional_layer_depth * extractor.depth_multiplier)
        return bifpn.Decoder(type="fpn", fpn=rcfg.decoders.FPN(
            num_filters=max(depth, extractor.min_depth),
            use_separable_conv=extractor.use_depthwise))
    check.require(not extractor.use_depthwise, "model.ssd.feature_extractor.use_depthwise",
                  "not supported with bifpn (nor by the Object Detection API's EfficientNet-"
                  "BiFPN extractor; the BiFPN's convolutions are separable anyway)")
    spec = extractor.bifpn
    check.require(spec.combine_method == "fast_attention",
                  "model.ssd.feature_extractor.bifpn.combine_method",
                  f"{spec.combine_method!r} is not supported; use fast_attention")
    check.require(spec.num_iterations > 0 and spec.num_filters > 0,
                  "model.ssd.feature_extractor.bifpn", "num_iterations and num_filters are needed")
    return bifpn.Decoder(type="bifpn", bifpn=bifpn.BiFPN(
        num_filters=max(spec.num_filters, extractor.min_depth), num_repeats=spec.num_iterations,
        use_separable_conv=True, activation=_activation(extractor.conv_hyperparams)))


def _head(ssd, check: _Checker) -> rcfg.RetinaNetHead:
    check.require(ssd.box_predictor.HasField("weight_shared_convolutional_box_predictor"),
                  "model.ssd.box_predictor", "needs weight_shared_convolutional_box_predictor")
    predictor = ssd.box_predictor.weight_shared_convolutional_box_predictor
    check.require(predictor.kernel_size == 3 and predictor.box_code_size == 4, PREDICTOR,
                  "kernel_size 3 and box_code_size 4 only")
    check.require(predictor.depth > 0 and predictor.num_layers_before_predictor > 0, PREDICTOR,
                  "depth and num_layers_before_predictor are needed")
    return rcfg.RetinaNetHead(num_convs=predictor.num_layers_before_predictor,
                              num_filters=predictor.depth,
                              use_separable_conv=predictor.use_depthwise)


def _anchor(ssd) -> rcfg.Anchor:
    anchors = ssd.anchor_generator.multiscale_anchor_generator
    return rcfg.Anchor(num_scales=anchors.scales_per_octave,
                       aspect_ratios=list(anchors.aspect_ratios) or [0.5, 1.0, 2.0],
                       anchor_size=anchors.anchor_scale)


def _detection_generator(ssd, check: _Checker) -> rcfg.DetectionGenerator:
    post = ssd.post_processing
    check.require(post.score_converter == post.SIGMOID,
                  "model.ssd.post_processing.score_converter",
                  "must be SIGMOID (RetinaNet scores classes independently)")
    nms = post.batch_non_max_suppression
    coder = ssd.box_coder.faster_rcnn_box_coder
    return rcfg.DetectionGenerator(
        pre_nms_score_threshold=nms.score_threshold, nms_iou_threshold=nms.iou_threshold,
        max_num_detections=min(nms.max_total_detections,
                               nms.max_detections_per_class * ssd.num_classes),
        use_class_agnostic_nms=nms.use_class_agnostic_nms,
        box_coder_weights=[coder.y_scale, coder.x_scale, coder.height_scale, coder.width_scale]
        if ssd.HasField("box_coder") else None)


def _losses(ssd, l2_weight_decay: float) -> rcfg.Losses:
    loss = ssd.loss
    focal = loss.classification_loss.weighted_sigmoid_focal
    smooth_l1 = loss.localization_loss.weighted_smooth_l1
    return rcfg.Losses(
        focal_loss_alpha=focal.alpha if focal.HasField("alpha") else 0.25,
        focal_loss_gamma=focal.gamma, huber_loss_delta=smooth_l1.delta,
        loss_weight=loss.classification_weight,
        box_loss_weight=loss.localization_weight / max(loss.classification_weight, 1e-9),
        l2_weight_decay=l2_weight_decay)


def _parser(pipeline, check: _Checker) -> rcfg.Parser:
    parser = rcfg.Parser(max_num_instances=pipeline.train_config.max_number_of_boxes)
    matcher = pipeline.model.ssd.matcher.argmax_matcher
    parser.match_threshold = matcher.matched_threshold
    parser.unmatched_threshold = matcher.unmatched_threshold
    for index, step in enumerate(pipeline.train_config.data_augmentation_options):
        kind = step.WhichOneof("preprocessing_step")
        field = f"train_config.data_augmentation_options[{index}]"
        if kind == "random_horizontal_flip":
            parser.aug_rand_hflip = True
        elif kind == "random_scale_crop_and_pad_to_square":
            crop = step.random_scale_crop_and_pad_to_square
            check.require(0 < crop.scale_min <= crop.scale_max, field,
                          "needs 0 < scale_min <= scale_max")
            parser.aug_scale_min, parser.aug_scale_max = crop.scale_min, crop.scale_max
        elif kind == "ssd_random_crop":
            parser.aug_type = common.Augmentation(type="ssd_random_crop")
        else:
            check.require(False, field, "is empty")
    return parser


def _data(pipeline, check: _Checker) -> rcfg.DataConfig:
    reader = pipeline.train_input_reader
    paths = list(reader.tf_record_input_reader.input_path)
    return rcfg.DataConfig(input_path=",".join(paths), is_training=True, dtype="float32",
                           global_batch_size=pipeline.train_config.batch_size,
                           shuffle_buffer_size=1000 if reader.shuffle else 1,
                           parser=_parser(pipeline, check))


def _learning_rate(rate, field: str, check: _Checker) -> dict:
    kind = rate.WhichOneof("learning_rate")
    check.require(kind is not None, field, "needs a learning rate")
    if kind == "constant_learning_rate":
        return {"learning_rate": {"type": "constant", "constant": {
            "learning_rate": rate.constant_learning_rate.learning_rate}}}
    cosine = rate.cosine_decay_learning_rate
    check.require(cosine.hold_base_rate_steps == 0, f"{field}.cosine_decay_learning_rate",
                  "hold_base_rate_steps is not supported")
    schedule = {"learning_rate": {"type": "cosine", "cosine": {
        "initial_learning_rate": cosine.learning_rate_base,
        "decay_steps": max(1, cosine.total_steps)}}}
    if cosine.warmup_steps:
        schedule["warmup"] = {"type": "linear", "linear": {
            "warmup_steps": cosine.warmup_steps,
            "warmup_learning_rate": cosine.warmup_learning_rate}}
    return schedule


def _optimization(train_config, check: _Checker) -> optimization.OptimizationConfig:
    optimizer = train_config.optimizer
    kind = optimizer.WhichOneof("optimizer")
    check.require(kind is not None, "train_config.optimizer", "needs momentum_optimizer or "
                                                              "adam_optimizer")
    check.require(0.0 < optimizer.moving_average_decay < 1.0,
                  "train_config.optimizer.moving_average_decay", "must be in (0, 1)")
    field = f"train_config.optimizer.{kind}.learning_rate"
    if kind == "momentum_optimizer":
        spec = {"optimizer": {"type": "sgd", "sgd": {
            "momentum": optimizer.momentum_optimizer.momentum_optimizer_value}}}
        rate = optimizer.momentum_optimizer.learning_rate
    else:
        spec = {"optimizer": {"type": "adam", "adam": {
            "epsilon": optimizer.adam_optimizer.epsilon}}}
        rate = optimizer.adam_optimizer.learning_rate
    clip = train_config.gradient_clipping_by_norm
    check.require(clip >= 0, "train_config.gradient_clipping_by_norm", "must be >= 0")
    if clip > 0:  # Model Garden clips the global norm of all gradients together
        spec["optimizer"][spec["optimizer"]["type"]]["global_clipnorm"] = clip
    if optimizer.use_moving_average:  # Model Garden's EMA optimizer (tsoda/training/train.py swaps)
        spec["ema"] = {"average_decay": optimizer.moving_average_decay}
    return optimization.OptimizationConfig({**spec, **_learning_rate(rate, field, check)})


def _init_checkpoint(train_config, check: _Checker) -> tuple[str | None, str]:
    kind = train_config.fine_tune_checkpoint_type or "detection"
    check.require(kind in ("detection", "full", "classification"),
                  "train_config.fine_tune_checkpoint_type",
                  f"{kind!r} is not supported; use detection or classification")
    modules = "backbone" if kind == "classification" else "all"
    return (train_config.fine_tune_checkpoint or None), modules


def build_experiment(pipeline, source: str | Path = "<pipeline.config>") -> Experiment:
    """Maps a TrainEvalPipelineConfig onto a Model Garden RetinaNet experiment.

    Raises:
        PipelineConfigError: a missing or invalid value, naming its field path.
    """
    check = _Checker(source)
    check.require(pipeline.model.HasField("ssd"), "model", "needs ssd { }")
    check_fixed(pipeline, check)
    ssd = pipeline.model.ssd
    check.require(ssd.num_classes >= 1, "model.ssd.num_classes", "must be at least 1")
    check.require(ssd.encode_background_as_zeros, "model.ssd.encode_background_as_zeros",
                  "must be true (sigmoid scores per class)")
    check.require(not ssd.freeze_batchnorm, "model.ssd.freeze_batchnorm", "must be false")
    min_level, max_level = _levels(ssd, check)
    height, width = _input_hw(ssd, max_level, check)
    model = TsodaRetinaNet(
        num_classes=ssd.num_classes + 1,  # Model Garden keeps class 0 for the background
        input_size=[height, width, 3], min_level=min_level, max_level=max_level,
        anchor=_anchor(ssd), backbone=_backbone(ssd.feature_extractor, check),
        decoder=_decoder(ssd.feature_extractor, check), head=_head(ssd, check),
        detection_generator=_detection_generator(ssd, check),
        norm_activation=_norm_activation(ssd))
    train = pipeline.train_config
    check.require(train.batch_size >= 1, "train_config.batch_size", "must be at least 1")
    init_checkpoint, modules = _init_checkpoint(train, check)
    task = TsodaRetinaNetTask(
        model=model, losses=_losses(ssd, _regularization(ssd, check)),
        train_data=_data(pipeline, check), init_checkpoint=init_checkpoint,
        init_checkpoint_modules=modules, use_coco_metrics=False,
        export_config=rcfg.ExportConfig(output_normalized_coordinates=True,
                                         cast_num_detections_to_float=True,
                                         cast_detection_classes_to_float=True))
    return Experiment(task=task, optimization=_optimization(train, check),
                      batch_size=train.batch_size, num_steps=int(train.num_steps),
                      input_hw=(height, width),
                      label_map_path=pipeline.train_input_reader.label_map_path)
