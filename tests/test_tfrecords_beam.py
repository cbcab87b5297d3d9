"""``generate_tfrecord.py --beam`` writes the local writer's examples (any shard order)
and its report."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("apache_beam")

import tensorflow as tf

from auto_annotate import voc
from tests.helpers import BLUE, RED, draw, save
from tests.tsoda_helpers import synthetic_voc
from tsoda.data.tfrecords import write_tfrecords

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "generate_tfrecord.py"


def _script_main():
    spec = importlib.util.spec_from_file_location("generate_tfrecord", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _examples(paths) -> list[tf.train.Example]:
    found = [tf.train.Example.FromString(record.numpy())
             for record in tf.data.TFRecordDataset([str(p) for p in paths])]
    return sorted(found, key=lambda e: int(e.features.feature["image/source_id"]
                                           .bytes_list.value[0]))


@pytest.fixture()
def data(tmp_path):
    """Five labelled images, an EXIF-rotated JPEG, a negative, a file without image (skipped)
    and a box with an unknown class (dropped)."""
    folder = synthetic_voc(tmp_path / "data", count=5)
    save(folder / "phone.jpg", draw((64, 40), [(RED, (4, 6, 30, 20))]), orientation=6,
         quality=95)
    voc.write_voc(folder / "phone.xml", voc.VocAnnotation(
        "phone.jpg", 40, 64, objects=(voc.VocObject("flame", (6.0, 4.0, 20.0, 30.0)),
                                      voc.VocObject("dog", (1.0, 1.0, 5.0, 5.0)))))
    save(folder / "empty.png", draw((50, 30), [(BLUE, (1, 1, 5, 5))]))
    voc.write_voc(folder / "empty.xml", voc.VocAnnotation("empty.png", 50, 30))
    voc.write_voc(folder / "a_lonely.xml", voc.VocAnnotation("nowhere.png", 50, 30))
    (tmp_path / "label_map.pbtxt").write_text('item { id: 1 name: "flame" }\n')
    return folder


@pytest.mark.parametrize("workers", [[], ["--direct_num_workers", "2",
                                           "--direct_running_mode", "multi_processing"]],
                         ids=["in_process", "two_processes"])
def test_beam_records_hold_the_local_examples_and_report(data, tmp_path, capsys, workers):
    label_map = tmp_path / "label_map.pbtxt"
    local = write_tfrecords(data, data, label_map, tmp_path / "local" / "train.record", 2)
    code = _script_main()(["--xml_dir", str(data), "--image_dir", str(data),
                           "--label_map_path", str(label_map), "--output_path",
                           str(tmp_path / "beam" / "train.record"), "--num_shards", "2",
                           "--beam", "--runner", "DirectRunner", *workers])
    out = capsys.readouterr().out
    assert code == 1  # as locally: one file skipped, one box dropped
    beam_shards = sorted((tmp_path / "beam").iterdir())
    assert [p.name for p in beam_shards] == [p.name for p in local.output_paths]
    ours, theirs = _examples(beam_shards), _examples(local.output_paths)
    assert len(ours) == local.examples == 7 and ours == theirs
    def lines(text: str) -> list[str]:  # the report, without the shards' folders
        return [line for line in text.splitlines() if "train.record" not in line]

    assert lines(out) == lines(local.format())
    assert "a_lonely.xml: no image 'nowhere.png'" in out and "'dog'" in out


def test_beam_without_usable_example_writes_no_file(tmp_path, capsys):
    voc.write_voc(tmp_path / "data" / "lonely.xml", voc.VocAnnotation("none.png", 5, 5))
    (tmp_path / "label_map.pbtxt").write_text('item { id: 1 name: "flame" }\n')
    main = _script_main()
    args = ["--xml_dir", str(tmp_path / "data"), "--image_dir", str(tmp_path / "data"),
            "--label_map_path", str(tmp_path / "label_map.pbtxt"), "--output_path",
            str(tmp_path / "out" / "x.record"), "--num_shards", "3"]
    assert main([*args, "--beam", "--runner", "DirectRunner"]) == 1
    assert "no usable example: no record file written" in capsys.readouterr().out
    assert not list((tmp_path / "out").iterdir())  # no shard, no work folder
    with pytest.raises(SystemExit):  # Beam's options without --beam: a usage error
        main([*args, "--runner", "DirectRunner"])
