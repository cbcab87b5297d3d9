"""The Python API: ``AutoAnnotate(...).generate_annotations()``, which the CLI calls."""

from __future__ import annotations

from pathlib import Path

from auto_annotate.annotate import Options, annotate_folder
from auto_annotate.errors import AnnotateError
from auto_annotate.label_map import load_label_map
from auto_annotate.model import load_detector, model_fingerprint, model_kind
from auto_annotate.summary import Summary

__all__ = ["AutoAnnotate", "model_id", "one_model_path"]


class AutoAnnotate:
    """Labels a folder of images with a detection model, as LabelImg-ready VOC XML.

    Arguments are checked here, before the model is loaded; the model itself (its
    signature, inputs and outputs) is checked when :meth:`generate_annotations` loads it,
    before the first image.

    Args:
        model_path: a SavedModel folder (holding ``saved_model.pb``) or a ``.tflite`` file
            (run with LiteRT, the ``litert`` extra; fixed-size inputs are letterboxed).
        label_map_path: ``label_map.pbtxt`` mapping class ids to names.
        imgs_path: folder of images.
        xml_path: where the XML goes (default: beside the images).
        threshold: detections with score >= threshold are written; in [0, 1].
        batch_size: images per model call, for models that take any batch size.
        recursive: also annotate images in sub-folders (XML mirrors the sub-folders).
        overwrite: replace existing XML files, except verified ones (never replaced).
        write_empty: write an XML with no object for images with no detection.
        progress: show a progress bar.
        tta: test-time augmentation views fused with the original (auto_annotate/tta.py):
            "flip", "tiles"; none by default.
        saved_model_path: the former name of ``model_path``, still accepted; give one of
            the two.

    Raises:
        AnnotateError: a path that does not exist, a model path that is neither a SavedModel
            folder nor a ``.tflite`` file, or an unreadable label map.
        ValueError: a threshold outside [0, 1], a batch size below 1, or both or neither of
            ``model_path`` and ``saved_model_path``.
    """

    def __init__(self, model_path: str | Path | None = None,
                 label_map_path: str | Path | None = None,
                 imgs_path: str | Path | None = None, xml_path: str | Path | None = None,
                 threshold: float = 0.5, batch_size: int = 1, recursive: bool = False,
                 overwrite: bool = False, write_empty: bool = False,
                 progress: bool = True, tta: tuple[str, ...] = (), *,
                 saved_model_path: str | Path | None = None) -> None:
        from auto_annotate.tta import check_views

        if label_map_path is None or imgs_path is None:
            raise TypeError("AutoAnnotate needs label_map_path and imgs_path")
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.model_path = Path(one_model_path(model_path, saved_model_path))
        self.imgs_path = Path(imgs_path)
        self.xml_path = Path(xml_path) if xml_path is not None else None
        self.batch_size = batch_size
        self.tta = check_views(tta) if tta else ()  # unknown views refused before any work
        if not self.imgs_path.is_dir():
            raise AnnotateError(self.imgs_path, "image folder does not exist")
        model_kind(self.model_path)
        self.options = Options(threshold=threshold, recursive=recursive, overwrite=overwrite,
                               write_empty=write_empty, progress=progress,
                               model_id=model_id(self.model_path, self.tta))
        self.label_map = load_label_map(label_map_path)

    @property
    def saved_model_path(self) -> Path:
        """The model path, under its former name."""
        return self.model_path

    def generate_annotations(self) -> Summary:
        """Loads the model, annotates the folder, and returns the run's Summary.

        Raises:
            ModelError: the model cannot be loaded or its inputs and outputs cannot be used.
        """
        from auto_annotate.tta import TtaDetector

        detector = load_detector(self.model_path, self.batch_size)
        if self.tta:
            detector = TtaDetector(detector, self.tta)
        return annotate_folder(detector, self.label_map, self.imgs_path, self.xml_path,
                               self.options)


def model_id(model_path: str | Path, tta: tuple[str, ...] = ()) -> str:
    """What the manifest records as the model: its content's fingerprint, and the TTA
    views it ran with (a run with other views is another run)."""
    return model_fingerprint(model_path) + (f"+tta:{','.join(tta)}" if tta else "")


def one_model_path(model_path: str | Path | None,
                   saved_model_path: str | Path | None) -> str | Path:
    """The model path given as ``model_path`` or by its former name ``saved_model_path``.

    Raises:
        ValueError: both or neither given.
    """
    if (model_path is None) == (saved_model_path is None):
        given = "both" if model_path is not None else "neither"
        raise ValueError("give the model as model_path or as saved_model_path (its former "
                         f"name), exactly one of them (got {given})")
    return model_path if model_path is not None else saved_model_path
