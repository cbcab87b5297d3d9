"""The Python API: ``AutoAnnotate(...).generate_annotations()``, which the CLI calls."""

from __future__ import annotations

from pathlib import Path

from auto_annotate.annotate import Options, annotate_folder
from auto_annotate.errors import AnnotateError
from auto_annotate.label_map import load_label_map
from auto_annotate.model import model_fingerprint
from auto_annotate.summary import Summary


class AutoAnnotate:
    """Labels a folder of images with a detection SavedModel, as LabelImg-ready VOC XML.

    Arguments are checked here, before the model is loaded; the model's signature is
    checked when :meth:`generate_annotations` loads it, before the first image.

    Args:
        saved_model_path: folder holding ``saved_model.pb``.
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

    Raises:
        AnnotateError: a path that does not exist, or an unreadable label map.
        ValueError: a threshold outside [0, 1] or a batch size below 1.
    """

    def __init__(self, saved_model_path: str | Path, label_map_path: str | Path,
                 imgs_path: str | Path, xml_path: str | Path | None = None,
                 threshold: float = 0.5, batch_size: int = 1, recursive: bool = False,
                 overwrite: bool = False, write_empty: bool = False,
                 progress: bool = True, tta: tuple[str, ...] = ()) -> None:
        from auto_annotate.tta import check_views

        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.saved_model_path = Path(saved_model_path)
        self.imgs_path = Path(imgs_path)
        self.xml_path = Path(xml_path) if xml_path is not None else None
        self.batch_size = batch_size
        self.tta = check_views(tta) if tta else ()  # unknown views refused before any work
        if not self.imgs_path.is_dir():
            raise AnnotateError(self.imgs_path, "image folder does not exist")
        if not self.saved_model_path.is_dir():
            raise AnnotateError(self.saved_model_path, "SavedModel folder does not exist")
        self.options = Options(threshold=threshold, recursive=recursive, overwrite=overwrite,
                               write_empty=write_empty, progress=progress,
                               model_id=model_fingerprint(self.saved_model_path)
                               + (f"+tta:{','.join(self.tta)}" if self.tta else ""))
        self.label_map = load_label_map(label_map_path)

    def generate_annotations(self) -> Summary:
        """Loads the model, annotates the folder, and returns the run's Summary.

        Raises:
            ModelError: the SavedModel cannot be loaded or its signature cannot be used.
        """
        from auto_annotate.model import SavedModelDetector
        from auto_annotate.tta import TtaDetector

        detector = SavedModelDetector(self.saved_model_path, self.batch_size)
        if self.tta:
            detector = TtaDetector(detector, self.tta)
        return annotate_folder(detector, self.label_map, self.imgs_path, self.xml_path,
                               self.options)
