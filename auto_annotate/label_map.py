"""Reading Object Detection API label maps (``label_map.pbtxt``).

The file is protobuf text format::

    item { id: 1 name: "flame" display_name: "Flame" }

Only ``item`` entries with ``id``, ``name`` and ``display_name`` are used; other fields
(e.g. ``keypoints``, ``frequency``) are parsed and ignored, as the Object Detection API does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from auto_annotate.errors import LabelMapError

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<punct>[{}<>:;,\[\]])
  | (?P<word>[-+.\w]+)
""", re.VERBOSE)
_CLOSE = {"{": "}", "<": ">"}


@dataclass(frozen=True)
class LabelMap:
    """Label-map ids (1-based) to class names (``display_name`` if given, else ``name``)."""

    names: dict[int, str]

    def name_of(self, class_id: int) -> str | None:
        """The class name of an id, or None if the id is not in the label map."""
        return self.names.get(int(class_id))

    def id_of(self, name: str) -> int | None:
        """The id of a class name, matched case-insensitively; None if unknown."""
        wanted = name.strip().lower()
        for class_id, known in self.names.items():
            if known.lower() == wanted:
                return class_id
        return None

    def ordered_names(self) -> list[str]:
        """Class names in id order."""
        return [self.names[i] for i in sorted(self.names)]


def _tokens(text: str, path: Path) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            line = text.count("\n", 0, pos) + 1
            raise LabelMapError(path, f"line {line}: unexpected character {text[pos]!r}")
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
        pos = match.end()
    return tokens


def _unquote(token: str) -> str:
    body = token[1:-1]
    return body.encode("latin-1", "backslashreplace").decode("unicode_escape") \
        if "\\" in body else body


def _parse_message(tokens, pos, path, closer):
    """Parses fields until ``closer``; returns (list of (name, value), next position)."""
    fields = []
    while pos < len(tokens) and tokens[pos][1] != closer:
        kind, name = tokens[pos]
        if kind != "word":
            raise LabelMapError(path, f"expected a field name, found {name!r}")
        pos += 1
        if pos < len(tokens) and tokens[pos][1] == ":":
            pos += 1
        if pos >= len(tokens):
            raise LabelMapError(path, f"field {name!r} has no value")
        kind, value = tokens[pos]
        if value in _CLOSE:
            inner, pos = _parse_message(tokens, pos + 1, path, _CLOSE[value])
            fields.append((name, inner))
        elif kind in ("string", "word"):
            fields.append((name, _unquote(value) if kind == "string" else value))
        else:
            raise LabelMapError(path, f"field {name!r} has no value (found {value!r})")
        pos += 1
        while pos < len(tokens) and tokens[pos][1] in (",", ";"):
            pos += 1
    if closer is not None and pos >= len(tokens):
        raise LabelMapError(path, f"missing {closer!r} at end of file")
    return fields, pos


def _item_entry(fields: list, path: Path) -> tuple[int, str]:
    values = {name: value for name, value in fields if isinstance(value, str)}
    if "id" not in values:
        raise LabelMapError(path, f"an item has no id: {values}")
    try:
        class_id = int(values["id"])
    except ValueError:
        raise LabelMapError(path, f"item id {values['id']!r} is not an integer") from None
    if class_id < 1:
        raise LabelMapError(path, f"item id {class_id} is invalid: ids start at 1 "
                                  "(0 is the background)")
    name = values.get("display_name") or values.get("name")
    if not name:
        raise LabelMapError(path, f"item {class_id} has neither name nor display_name")
    return class_id, name


def parse_label_map(text: str, path: str | Path = "<label map>") -> LabelMap:
    """Parses label-map text.

    Raises:
        LabelMapError: on a syntax error, an item without id or name, an id below 1, a
            repeated id or name, or a file with no item.
    """
    path = Path(path)
    fields, _ = _parse_message(_tokens(text, path), 0, path, None)
    names: dict[int, str] = {}
    for field, value in fields:
        if field != "item" or isinstance(value, str):
            raise LabelMapError(path, f"unexpected top-level field {field!r}; "
                                      "expected item {...}")
        class_id, name = _item_entry(value, path)
        if class_id in names:
            raise LabelMapError(path, f"id {class_id} appears twice")
        if name.lower() in (n.lower() for n in names.values()):
            raise LabelMapError(path, f"class name {name!r} appears twice")
        names[class_id] = name
    if not names:
        raise LabelMapError(path, "no item found")
    return LabelMap(names)


def load_label_map(path: str | Path) -> LabelMap:
    """Reads and parses a label-map file; see :func:`parse_label_map`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LabelMapError(path, f"cannot read label map ({error})") from None
    return parse_label_map(text, path)
