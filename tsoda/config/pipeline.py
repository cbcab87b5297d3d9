"""Reading ``pipeline.config`` (Object Detection API text protobuf) into typed messages.

The schema is ``protos/pipeline.proto``: the Object Detection API's message and field
names, limited to what tsoda maps onto TF Model Garden. A field outside it is refused
with its full path and line, never ignored; a declared field that has no effect here is
accepted with a warning naming it (``tsoda/config/unmapped.py``). Messages are built from
the serialized descriptor set ``protos/pipeline.desc``, which works with any protobuf
runtime.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from auto_annotate import textproto
from tsoda.config.overrides import apply_override
from tsoda.config.unmapped import IGNORED, warn_ignored
from tsoda.errors import PipelineConfigError

DESCRIPTOR_SET = Path(__file__).parent / "protos" / "pipeline.desc"
PACKAGE = "tsoda.protos"  # the package declared in pipeline.proto


@functools.cache
def _pool() -> descriptor_pool.DescriptorPool:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return pool


def message_class(name: str) -> type:
    """The message class of ``tsoda.protos.<name>`` (the proto package), e.g.
    'TrainEvalPipelineConfig'."""
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"{PACKAGE}.{name}"))


def unsupported_fields(fields: list[textproto.Field], descriptor,
                       prefix: str = "") -> list[tuple[str, int]]:
    """(path, line) of every field the schema does not declare, depth first."""
    found = []
    for field in fields:
        path = f"{prefix}{field.name}"
        declared = descriptor.fields_by_name.get(field.name)
        if declared is None:
            found.append((path, field.line))
        elif declared.message_type is not None and isinstance(field.value, list):
            found += unsupported_fields(field.value, declared.message_type, path + ".")
    return found


def ignored_fields(fields: list[textproto.Field], prefix: str = "") -> list[tuple[str, int]]:
    """(path, line) of every field set that tsoda accepts but does not use, in file order."""
    found = []
    for field in fields:
        path = f"{prefix}{field.name}"
        if path in IGNORED:
            found.append((path, field.line))
        elif isinstance(field.value, list):
            found += ignored_fields(field.value, path + ".")
    return found


def parse_pipeline_config(text: str, path: str | Path = "<pipeline.config>",
                          overrides: Sequence[str] = (), warn: bool = True):
    """Parses pipeline.config text into a TrainEvalPipelineConfig message, then applies
    ``overrides`` (``FIELD=VALUE`` each, in order; see tsoda/config/overrides.py).

    With ``warn``, each field set that tsoda accepts but does not use is logged once, with
    its line (or "--set").

    Raises:
        PipelineConfigError: a syntax error, or a field tsoda does not support (its path
            and line are named; the rest are counted), or an override that does not fit
            the schema.
    """
    cls = message_class("TrainEvalPipelineConfig")
    try:
        fields = textproto.parse(text, path)
    except textproto.TextProtoError as error:
        raise PipelineConfigError(path, f"line {error.line}: {error.problem}") from None
    unknown = unsupported_fields(fields, cls.DESCRIPTOR)
    if unknown:
        (field_path, line), more = unknown[0], len(unknown) - 1
        tail = f" (and {more} more: {', '.join(p for p, _ in unknown[1:4])})" if more else ""
        raise PipelineConfigError(path, f"line {line}: {field_path} is not supported by "
                                        f"tsoda{tail}; see tsoda/config/protos/pipeline.proto")
    message = cls()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise PipelineConfigError(path, str(error)) from None
    settings = [(field, f"line {line}") for field, line in ignored_fields(fields)]
    for assignment in overrides:
        settings += [(field, "--set") for field in apply_override(message, assignment, path)]
    if warn:
        warn_ignored(settings, path, message)
    return message


def load_pipeline_config(path: str | Path, overrides: Sequence[str] = (), warn: bool = True):
    """Reads and parses a pipeline.config file; see :func:`parse_pipeline_config`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PipelineConfigError(path, f"cannot read ({error})") from None
    return parse_pipeline_config(text, path, overrides, warn)


@dataclass(frozen=True)
class LoadedConfig:
    """A parsed pipeline.config (``message``, a TrainEvalPipelineConfig, overrides
    applied) and the file it came from (``source``, named in errors)."""

    message: object
    source: str | Path


def load(config: str | Path | LoadedConfig, overrides: Sequence[str] = ()) -> LoadedConfig:
    """``config`` parsed (a path), or as it is (a LoadedConfig: parsed before).

    Raises:
        PipelineConfigError: see :func:`parse_pipeline_config`; overrides given with a
            config parsed before.
    """
    if not isinstance(config, LoadedConfig):
        return LoadedConfig(load_pipeline_config(config, overrides), config)
    if overrides:
        raise PipelineConfigError(config.source, "overrides apply when the file is parsed")
    return config


def to_text(message) -> str:
    """The message as pipeline.config text (for writing resolved configs)."""
    return text_format.MessageToString(message)


def check_label_map(num_classes: int, label_map_path: str | Path,
                    source: str | Path = "<pipeline.config>") -> None:
    """Refuses a label map whose class ids the model cannot predict.

    Raises:
        LabelMapError: the label map cannot be read.
        PipelineConfigError: a class id above ``model.ssd.num_classes`` (so also a map with
            more classes than ``num_classes``).
    """
    from auto_annotate.label_map import load_label_map

    names = load_label_map(label_map_path).names
    if max(names) > num_classes:
        raise PipelineConfigError(source, f"model.ssd.num_classes is {num_classes}, but the "
                                          f"label map {label_map_path} has {len(names)} "
                                          f"class(es) with ids up to {max(names)}; the model "
                                          f"predicts ids 1..num_classes only")


def require_label_map(pipeline, source: str | Path = "<pipeline.config>") -> Path:
    """``train_input_reader.label_map_path``, checked against ``model.ssd.num_classes``.

    Raises:
        PipelineConfigError: the field is missing or empty, or the label map has a class
            id above num_classes.
        LabelMapError: the label map cannot be read.
    """
    path = pipeline.train_input_reader.label_map_path.strip()
    if not path:
        raise PipelineConfigError(source, "train_input_reader.label_map_path: missing; "
                                          "set it to the label_map.pbtxt of the classes")
    check_label_map(pipeline.model.ssd.num_classes, path, source)
    return Path(path)
