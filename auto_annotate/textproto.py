"""A small reader for protobuf text format, for clear errors with field paths and lines.

Protobuf's own parser reports an unknown field by message type only; this reader turns a
file into a tree of (field name, value, line) so a caller can name the full path of a
field (``model.ssd.feature_extractor.foo``) before handing the text to protobuf.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Field", "TextProtoError", "parse", "unquote"]

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<punct>[{}<>:;,\[\]])
  | (?P<word>[-+.\w]+)
""", re.VERBOSE)
_CLOSE = {"{": "}", "<": ">"}


@dataclass(frozen=True)
class Field:
    """One field: its name, its value (a string, or a list of Fields for a message), and
    the 1-based line where its name stands."""

    name: str
    value: str | list[Field]
    line: int


class TextProtoError(ValueError):
    """A syntax error; ``line`` is 1-based."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        super().__init__(f"{path}: line {line}: {problem}")


def _tokens(text: str, path: Path) -> list[tuple[str, str, int]]:
    tokens, pos, line = [], 0, 1
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise TextProtoError(path, line, f"unexpected character {text[pos]!r}")
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group(), line))
        line += match.group().count("\n")
        pos = match.end()
    return tokens


_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})"
                     r"|U([0-9a-fA-F]{8})|(.))", re.DOTALL)
_SIMPLE = {"n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f",
           "v": b"\v", "\\": b"\\", "'": b"'", '"': b'"', "?": b"?"}


def _escape_bytes(match: re.Match) -> bytes:
    octal, hexa, short, long, char = match.groups()
    if octal or hexa:
        return bytes([int(octal, 8) % 256 if octal else int(hexa, 16)])
    if short or long:
        return chr(int(short or long, 16)).encode("utf-8")
    return _SIMPLE.get(char, ("\\" + char).encode("utf-8"))


def unquote(token: str) -> str:
    """The text of a quoted string token, with backslash escapes resolved.

    As in protobuf text format, octal and hex escapes are bytes, and the string's bytes
    are UTF-8 (``"caf\\303\\251"`` is "café").
    """
    body = token[1:-1]
    if "\\" not in body:
        return body
    data, pos = bytearray(), 0
    for match in _ESCAPE.finditer(body):
        data += body[pos:match.start()].encode("utf-8") + _escape_bytes(match)
        pos = match.end()
    data += body[pos:].encode("utf-8")
    return data.decode("utf-8", errors="replace")


def _value(tokens, pos, path, name, line):
    if pos >= len(tokens):
        raise TextProtoError(path, line, f"field {name!r} has no value")
    kind, value, value_line = tokens[pos]
    if value in _CLOSE:
        return _message(tokens, pos + 1, path, _CLOSE[value], value_line)
    if value == "[":  # a list of scalars: name: [1, 2]
        items, pos = [], pos + 1
        while pos < len(tokens) and tokens[pos][1] != "]":
            if tokens[pos][1] != ",":
                items.append(unquote(tokens[pos][1]) if tokens[pos][0] == "string"
                             else tokens[pos][1])
            pos += 1
        return items, pos
    if kind in ("string", "word"):
        return (unquote(value) if kind == "string" else value), pos
    raise TextProtoError(path, value_line, f"field {name!r} has no value (found {value!r})")


def _message(tokens, pos, path, closer, open_line):
    fields: list[Field] = []
    while pos < len(tokens) and tokens[pos][1] != closer:
        kind, name, line = tokens[pos]
        if kind != "word":
            raise TextProtoError(path, line, f"expected a field name, found {name!r}")
        pos += 1
        if pos < len(tokens) and tokens[pos][1] == ":":
            pos += 1
        value, pos = _value(tokens, pos, path, name, line)
        if isinstance(value, list) and value and not isinstance(value[0], Field):
            fields.extend(Field(name, item, line) for item in value)
        else:
            fields.append(Field(name, value, line))
        pos += 1
        while pos < len(tokens) and tokens[pos][1] in (",", ";"):
            pos += 1
    if closer is not None and pos >= len(tokens):
        raise TextProtoError(path, open_line, f"{closer!r} missing for the message opened here")
    return fields, pos


def parse(text: str, path: str | Path = "<text>") -> list[Field]:
    """Parses protobuf text format into Fields.

    Raises:
        TextProtoError: on a syntax error, naming the line.
    """
    path = Path(path)
    fields, _ = _message(_tokens(text, path), 0, path, None, 1)
    return fields
