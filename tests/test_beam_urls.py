"""The Beam pipelines on URLs: a test file system registered with Beam (scheme
``fakefs://``, backed by a local folder) stands in for ``gs://`` and the like, so every
file the pipelines touch goes through Beam's file systems, as on a cluster."""

from __future__ import annotations

import contextlib
import io
import posixpath
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("apache_beam")

from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

from auto_annotate import voc
from auto_annotate.beam.cli import main as beam_main
from auto_annotate.cli import main as cli_main
from auto_annotate.fileio import sha256_of_file
from auto_annotate.manifest import MANIFEST_NAME, read_manifest
from tests.helpers import BLUE, LABEL_MAP, RED, build_color_model, draw, save

SCHEME = "fakefs://"


class FakeFileSystem(LocalFileSystem):
    """``fakefs://a/b`` is ``root/a/b``; Beam finds this class by its scheme. Every call
    goes to a plain LocalFileSystem with the path translated."""

    root = Path("/nonexistent")
    disk = LocalFileSystem(None)

    @classmethod
    def scheme(cls):
        return "fakefs"

    def _local(self, url: str) -> str:
        return str(self.root / url[len(SCHEME):])

    def _url(self, local: str) -> str:
        return SCHEME + Path(local).relative_to(self.root).as_posix()

    def join(self, base, *paths):
        return posixpath.join(base, *paths)

    def split(self, path):
        return posixpath.split(path)

    def _url_dirname(self, url):
        return posixpath.dirname(url)

    def _list(self, prefix):
        for found in self.disk._list(self._local(prefix)):
            yield FileMetadata(self._url(found.path), found.size_in_bytes,
                               found.last_updated_in_seconds)

    def metadata(self, path):
        found = self.disk.metadata(self._local(path))
        return FileMetadata(path, found.size_in_bytes, found.last_updated_in_seconds)

    def rename(self, sources, destinations):
        self.disk.rename([self._local(p) for p in sources],
                         [self._local(p) for p in destinations])

    def copy(self, sources, destinations):
        self.disk.copy([self._local(p) for p in sources], [self._local(p) for p in destinations])

    def delete(self, paths):
        self.disk.delete([self._local(p) for p in paths])


def _translated(name: str):
    def method(self, path, *args, **kwargs):
        return getattr(self.disk, name)(self._local(path), *args, **kwargs)
    return method


for _name in ("mkdirs", "create", "open", "exists", "size", "last_updated", "checksum"):
    setattr(FakeFileSystem, _name, _translated(_name))


@pytest.fixture()
def fakefs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(FakeFileSystem, "root", tmp_path)
    imgs = tmp_path / "imgs"
    save(imgs / "red.png", draw((120, 80), [(RED, (10, 5, 30, 25))]))
    save(imgs / "both.png", draw((90, 140), [(RED, (1, 2, 40, 50)), (BLUE, (50, 100, 90, 140))]))
    save(imgs / "rotated.jpg", draw((96, 64), [(RED, (8, 8, 40, 30))]), orientation=6,
         quality=95)
    save(imgs / "none.png", draw((64, 48)))
    (imgs / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "label_map.pbtxt").write_text(LABEL_MAP, encoding="utf-8")
    build_color_model(tmp_path / "model")
    return tmp_path


def test_labelling_through_beam_file_systems_writes_the_cli_labels(fakefs, capsys):
    verified = voc.VocAnnotation("red.png", 120, 80, verified=True)
    voc.write_voc(fakefs / "xml" / "red.xml", verified)
    code = beam_main(["--model_path", SCHEME + "model", "--label_map_path",
                      SCHEME + "label_map.pbtxt", "--imgs_path", SCHEME + "imgs",
                      "--xml_path", SCHEME + "xml", "--quiet", "--runner", "DirectRunner"])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "annotated:         2" in out and "imgs/corrupt.jpg: not a" in out
    with contextlib.redirect_stdout(io.StringIO()):
        cli_main(["--model_path", str(fakefs / "model"), "--label_map_path",
                  str(fakefs / "label_map.pbtxt"), "--imgs_path", str(fakefs / "imgs"),
                  "--xml_path", str(fakefs / "cli"), "--quiet"])
    for name in ("both.xml", "rotated.xml"):  # the same bytes, the image named by its URL
        ours = (fakefs / "xml" / name).read_text()
        assert f"<path>{SCHEME}imgs/" in ours
        assert ours.replace(SCHEME + "imgs", str((fakefs / "imgs").resolve())) == \
            (fakefs / "cli" / name).read_text()
    assert voc.read_voc(fakefs / "xml" / "red.xml") == verified
    assert sorted(p.name for p in (fakefs / "xml").iterdir() if not p.name.startswith(
        "auto_annotate_manifest-")) == ["both.xml", "predefined_classes.txt", "red.xml",
                                         "rotated.xml"]

    def records(folder):  # the hash differs with the <path> the XML names
        return {k: replace(r, time=None, xml_sha256=None)
                for k, r in read_manifest(folder / MANIFEST_NAME).items()}

    assert records(fakefs / "xml") == {k: v for k, v in records(fakefs / "cli").items()
                                       if k != "red.png"}
    for record in read_manifest(fakefs / "xml" / MANIFEST_NAME).values():
        if record.xml:
            assert record.xml_sha256 == sha256_of_file(fakefs / "xml" / record.xml)


def test_tfrecords_through_beam_file_systems(fakefs, capsys):
    import importlib.util

    import tensorflow as tf

    from tsoda.data.tfrecords import write_tfrecords

    for name, size in (("both.png", (90, 140)), ("rotated.jpg", (64, 96))):
        voc.write_voc(fakefs / "imgs" / f"{Path(name).stem}.xml", voc.VocAnnotation(
            name, *size, objects=(voc.VocObject("flame", (1.0, 2.0, 30.0, 40.0)),)))
    local = write_tfrecords(fakefs / "imgs", fakefs / "imgs", fakefs / "label_map.pbtxt",
                            fakefs / "local" / "t.record")
    script = Path(__file__).resolve().parents[1] / "scripts" / "generate_tfrecord.py"
    spec = importlib.util.spec_from_file_location("generate_tfrecord", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--xml_dir", SCHEME + "imgs", "--image_dir", SCHEME + "imgs",
                        "--label_map_path", SCHEME + "label_map.pbtxt", "--output_path",
                        SCHEME + "out/t.record", "--beam", "--runner", "DirectRunner"]) == 0
    assert f"{SCHEME}out/t.record" in capsys.readouterr().out
    assert sorted(p.name for p in (fakefs / "out").iterdir()) == ["t.record"]

    def examples(path):
        return sorted((tf.train.Example.FromString(r.numpy())
                       for r in tf.data.TFRecordDataset(str(path))),
                      key=lambda e: e.features.feature["image/source_id"].bytes_list.value[0])

    assert examples(fakefs / "out" / "t.record") == examples(local.output_paths[0])
