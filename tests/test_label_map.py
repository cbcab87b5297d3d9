"""Label maps: names, display names, other fields ignored, and clear errors."""

from __future__ import annotations

import pytest

from auto_annotate.errors import LabelMapError
from auto_annotate.label_map import load_label_map, parse_label_map
from tests.helpers import LABEL_MAP


def test_display_name_wins_over_name_and_comments_are_skipped():
    label_map = parse_label_map(LABEL_MAP)
    assert label_map.names == {1: "flame", 2: "smoke"}
    assert label_map.ordered_names() == ["flame", "smoke"]
    assert label_map.id_of("SMOKE") == 2 and label_map.id_of("dog") is None
    assert label_map.name_of(7) is None


def test_other_fields_and_nested_messages_are_ignored():
    text = """item { name: "person" id: 3 frequency: FREQUENT
                     keypoints { id: 0 label: "nose" } keypoints < id: 1 label: 'eye' > }
              item: { id: 1, name: "cat\\tx"; }"""
    assert parse_label_map(text).names == {3: "person", 1: "cat\tx"}


@pytest.mark.parametrize("text,problem", [
    ("", "no item"),
    ("item { name: 'a' }", "no id"),
    ("item { id: 0 name: 'a' }", "ids start at 1"),
    ("item { id: x name: 'a' }", "not an integer"),
    ("item { id: 1 }", "neither name"),
    ("item { id: 1 name: 'a' } item { id: 1 name: 'b' }", "id 1 appears twice"),
    ("item { id: 1 name: 'a' } item { id: 2 name: 'A' }", "appears twice"),
    ("item { id: 1 name: 'a' ", "'}' missing"),
    ("item { id: 1 name: 'a' } $", "unexpected character"),
    ("label { id: 1 }", "unexpected top-level field"),
])
def test_bad_label_maps_raise_an_error_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "bad.pbtxt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabelMapError, match=problem) as error:
        load_label_map(path)
    assert str(path) in str(error.value)


def test_missing_label_map_file(tmp_path):
    with pytest.raises(LabelMapError, match="cannot read"):
        load_label_map(tmp_path / "nope.pbtxt")


def test_shared_flames_label_map(flames_dir):
    assert load_label_map(flames_dir / "label_map.pbtxt").names == {1: "flame"}


@pytest.mark.parametrize("escaped", [r"caf\303\251", r"caf\xc3\xa9", r"caf\u00e9", "café"])
def test_escaped_names_decode_as_utf8_bytes_as_protobuf_does(escaped):
    label_map = parse_label_map(f'item {{ id: 1 name: "{escaped}" }}\n'
                                r'item { id: 2 name: "tab\there \"q\" \\ \'s\'" }')
    assert label_map.names == {1: "café", 2: "tab\there \"q\" \\ 's'"}
