"""``--set FIELD=VALUE``: one field of a parsed pipeline.config replaced, by its dotted path.

The value is written as in the config file (text format), except that strings need no
quotes: ``train_config.num_steps=600``, ``train_config.fine_tune_checkpoint=/w/ckpt-5``,
``model.ssd.post_processing.score_converter=SIGMOID``, a list as
``model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios=[0.5, 1.0, 2.0]``,
a message as ``model.ssd.image_resizer.fixed_shape_resizer={ height: 256 width: 256 }``.
The field's old value is replaced as a whole (a message's other fields, a repeated
field's other items). As when the file is parsed, a field cannot be set while another
member of its oneof is set (``adam_optimizer`` in a config with ``momentum_optimizer``):
edit the file for that. Repeated messages are set as a whole, e.g.
``train_config.data_augmentation_options=[{ random_horizontal_flip { } }]``.
"""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import text_encoding, text_format

from tsoda.config.unmapped import is_repeated, set_leaves
from tsoda.errors import PipelineConfigError

_POSITION = re.compile(r"^\d+:\d+ : ")


def _refuse(source, assignment: str, problem: str) -> PipelineConfigError:
    return PipelineConfigError(source, f"--set {assignment}: {problem}")


def _field(message, names: list[str], depth: int, source, assignment: str):
    """The descriptor of ``names[depth]`` in ``message``, refused if unknown or if another
    member of its oneof is set."""
    name, where = names[depth], ".".join(names[:depth]) or "the config"
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise _refuse(source, assignment, f"{where} has no field {name!r}; see "
                                          "tsoda/config/protos/pipeline.proto")
    oneof = field.containing_oneof
    chosen = message.WhichOneof(oneof.name) if oneof is not None else None
    if chosen not in (None, name):
        raise _refuse(source, assignment, f"{where} already sets {chosen}, another member "
                                          f"of oneof {oneof.name}")
    return field


def _target(message, names: list[str], source, assignment: str):
    """(the message holding the last field, its descriptor), walking and checking ``names``."""
    for depth in range(len(names) - 1):
        field = _field(message, names, depth, source, assignment)
        if field.message_type is None or is_repeated(field):
            kind = "a repeated message" if field.message_type else "not a message"
            raise _refuse(source, assignment, f"{'.'.join(names[:depth + 1])} is {kind}; "
                                              "set it as a whole")
        message = getattr(message, names[depth])
    return message, _field(message, names, len(names) - 1, source, assignment)


def _literal(field, value: str) -> str:
    """``value`` as text format; an unquoted string gets quotes."""
    text = value.strip()
    if field.type == field.TYPE_STRING and text[:1] not in ('"', "'", "["):
        return '"' + text_encoding.CEscape(text, as_utf8=True) + '"'
    return text


def apply_override(message, assignment: str, source: str | Path = "<pipeline.config>"
                   ) -> list[str]:
    """Applies one ``FIELD=VALUE`` to ``message`` in place.

    Returns:
        The paths of the leaf fields the override set.

    Raises:
        PipelineConfigError: no ``=``, an unknown field, a value of the wrong type, or a
            oneof member while another is set; one line naming the field.
    """
    path, equals, value = assignment.partition("=")
    names = path.strip().split(".")
    if not equals or not all(names):
        raise _refuse(source, assignment, "expected FIELD=VALUE, FIELD a dotted path such "
                                          "as train_config.num_steps")
    parent, field = _target(message, names, source, assignment)
    scratch, text = type(parent)(), f"{field.name}: {_literal(field, value)}"
    try:
        text_format.Parse(text, scratch)
    except text_format.ParseError as error:
        problem = _POSITION.sub("", str(error).splitlines()[0]).removeprefix(f"'{text}': ")
        raise _refuse(source, assignment, f"{path.strip()} ({_type_name(field)}): "
                                          f"{problem}") from None
    if [f.name for f, _ in scratch.ListFields()] != [field.name]:
        raise _refuse(source, assignment, "the value must be one value of the field")
    parent.ClearField(field.name)
    parent.MergeFrom(scratch)
    prefix = ".".join(names[:-1])
    return list(set_leaves(scratch, prefix + "." if prefix else ""))


def _type_name(field) -> str:
    if field.message_type is not None:
        kind = f"message {field.message_type.name}"
    elif field.enum_type is not None:
        kind = f"enum {field.enum_type.name}"
    else:
        kind = {field.TYPE_BOOL: "bool", field.TYPE_STRING: "string", field.TYPE_FLOAT: "float",
                field.TYPE_DOUBLE: "double", field.TYPE_INT32: "int32",
                field.TYPE_UINT32: "uint32", field.TYPE_INT64: "int64",
                field.TYPE_UINT64: "uint64"}.get(field.type, "scalar")
    return f"repeated {kind}" if is_repeated(field) else kind
