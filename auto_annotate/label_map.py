"""Reading Object Detection API label maps (``label_map.pbtxt``).

The file is protobuf text format::

    item { id: 1 name: "flame" display_name: "Flame" }

Only ``item`` entries with ``id``, ``name`` and ``display_name`` are used; other fields
(e.g. ``keypoints``, ``frequency``) are parsed and ignored, as the Object Detection API does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from auto_annotate import textproto
from auto_annotate.errors import LabelMapError

__all__ = ["LabelMap", "load_label_map", "parse_label_map"]


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


def _item_entry(fields: list[textproto.Field], path: Path) -> tuple[int, str]:
    values = {f.name: f.value for f in fields if isinstance(f.value, str)}
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
    try:
        fields = textproto.parse(text, path)
    except textproto.TextProtoError as error:
        raise LabelMapError(path, f"line {error.line}: {error.problem}") from None
    names: dict[int, str] = {}
    for field in fields:
        if field.name != "item" or isinstance(field.value, str):
            raise LabelMapError(path, f"unexpected top-level field {field.name!r}; "
                                      "expected item {...}")
        class_id, name = _item_entry(field.value, path)
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
