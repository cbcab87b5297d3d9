"""Running any TF2 detection SavedModel that follows the Object Detection API contract.

The ``serving_default`` signature is inspected once, before the first image, and the
runner adapts to what it finds: uint8 or float32 image input (float gets values 0-255),
a dynamic or fixed spatial size (images are letterboxed into a fixed size the way Model
Garden's parser does it, auto_annotate/letterbox.py, and boxes mapped back), batch 1
only, a dynamic batch, or a fixed batch (padded), and encoded-string input (the upright
image is sent as PNG).

:func:`load_detector` picks the runner for a model path: this one for a SavedModel
folder, :class:`auto_annotate.litert.TFLiteDetector` for a ``.tflite`` file. TensorFlow is
imported only when a SavedModel is loaded.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from auto_annotate import boxes as box_ops
from auto_annotate.detections import Detections
from auto_annotate.errors import ModelError, error_line
from auto_annotate.letterbox import Letterbox, letterbox_image

__all__ = ["EXPECTED", "MODEL_KINDS", "Detector", "InputSpec", "SavedModelDetector",
           "frozen_function", "inspect_input", "load_detector", "load_signature",
           "model_fingerprint", "model_kind", "outputs_to_detections"]

LOG = logging.getLogger(__name__)
REQUIRED_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes")
EXPECTED = ("one input: uint8 or float32 [B, H, W, 3] (B = 1 or None, H and W fixed or "
            "None) or string [B] / scalar; outputs detection_boxes, detection_scores, "
            "detection_classes (num_detections optional)")


_FINGERPRINT_FILES = ("saved_model.pb", "variables/variables.index")


def model_fingerprint(path: str | Path) -> str:
    """Identifies a model by its content, so a model exported into the same folder is new.

    A SavedModel folder is identified by ``saved_model.pb`` and ``variables/variables.index``
    (the index holds a checksum of every variable); a file (a ``.tflite`` model) by its
    bytes alone, so a renamed or moved copy keeps its identity (the digest is the file's
    ``sha256sum``).

    Returns:
        ``"sha256:"`` and the hex digest.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if not path.is_dir():
        _hash_file(digest, path)
        return "sha256:" + digest.hexdigest()
    for file in (path / name for name in _FINGERPRINT_FILES):
        digest.update(file.name.encode("utf-8") + b"\0")
        if file.is_file():
            _hash_file(digest, file)
    return "sha256:" + digest.hexdigest()


def _hash_file(digest, file: Path) -> None:
    with file.open("rb") as stream:
        for chunk in iter(lambda s=stream: s.read(1 << 20), b""):
            digest.update(chunk)


class Detector(Protocol):
    """What the annotation pipeline needs from a detector (fakes implement it in tests)."""

    max_batch: int

    def batch_key(self, image_hw: tuple[int, int]) -> Hashable:
        """Images with equal keys may share one batch."""

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detects on uint8 RGB images; boxes are pixel xyxy in each image's own frame.

        A detector may also have ``prepare(image) -> input``: the pipeline then calls it in
        its decoding threads, off the model's thread, and passes what it returned to
        ``predict`` in place of the image (e.g. the letterboxed input of a fixed-size
        model, with what maps its boxes back).

        And it may have ``submit(inputs)``: it starts the model on a batch and returns at
        once a handle whose ``done()`` says whether the batch has finished and whose
        ``result()`` waits and returns what ``predict`` would (or raises what it would
        raise). :func:`auto_annotate.predict.predict_stream` then keeps the model busy
        with the next batch while it batches images and hands outcomes on; without it,
        each batch runs in the stream's thread."""


@dataclass(frozen=True)
class InputSpec:
    """What the signature's single input accepts."""

    name: str
    dtype: str              # "uint8", "float32" or "string"
    batch: int | None       # None: any batch size; 0: a scalar string (one image)
    size_hw: tuple[int, int] | None   # fixed (height, width), or None for any size

    def describe(self) -> str:
        return f"input {self.name!r}: {self.dtype}, batch {self.batch}, size {self.size_hw}"


def _dims(spec) -> list[int | None]:
    return list(spec.shape.as_list()) if spec.shape.rank is not None else []


def inspect_input(name: str, spec, source: Path) -> InputSpec:
    """Builds the InputSpec of a TensorSpec, or raises ModelError naming what was found."""
    dtype, dims = spec.dtype.name, _dims(spec)
    found = f"found input {name!r} {dtype} {spec.shape}; expected {EXPECTED}"
    if dtype == "string":
        if spec.shape.rank not in (0, 1):
            raise ModelError(source, found)
        return InputSpec(name, dtype, 0 if spec.shape.rank == 0 else dims[0], None)
    if dtype not in ("uint8", "float32") or len(dims) != 4 or dims[3] not in (3, None):
        raise ModelError(source, found)
    height, width = dims[1], dims[2]
    if (height is None) != (width is None):
        raise ModelError(source, f"{found} (height and width must both be fixed or both free)")
    return InputSpec(name, dtype, dims[0], None if height is None else (height, width))


def load_signature(saved_model_path: str | Path):
    """Loads the model; returns (loaded object, serving_default function, InputSpec)."""
    import tensorflow as tf

    path = Path(saved_model_path)
    if not (path / "saved_model.pb").is_file():
        raise ModelError(path, "not a SavedModel directory (no saved_model.pb)")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # TF raises many types here; all mean "cannot load"
        raise ModelError(path, f"cannot load SavedModel ({error_line(error)})") from None
    signatures = dict(loaded.signatures)
    if "serving_default" not in signatures:
        raise ModelError(path, f"no 'serving_default' signature (found: {sorted(signatures)})")
    function = signatures["serving_default"]
    args, kwargs = function.structured_input_signature
    if args or len(kwargs) != 1:
        raise ModelError(path, f"found inputs {sorted(kwargs)}; expected {EXPECTED}")
    (name, spec), = kwargs.items()
    outputs = set(function.structured_outputs)
    missing = [key for key in REQUIRED_OUTPUTS if key not in outputs]
    if missing:
        raise ModelError(path, f"outputs {sorted(outputs)} lack {missing}; expected {EXPECTED}")
    return loaded, function, inspect_input(name, spec, path)


def frozen_function(function, source: str | Path):
    """``function`` (a serving signature) with its variables turned into constants, called the
    same way (keyword input, dict of outputs).

    With constants, TensorFlow's graph optimizer folds batch normalization and the other
    per-channel arithmetic into the convolutions before the first call; with variables it
    cannot. The frozen graph gives the same outputs up to float rounding (last digit) and
    ran tsoda's Lite0 export 1.35-1.45x faster per image on a 2-core CPU
    (docs/BENCHMARKS.md). A graph that cannot be frozen is run as it is, and the log says
    so: one whose conversion fails, and one that keeps other resources (a lookup table
    stays a resource, which the frozen graph would expect as a second input).
    """
    import tensorflow as tf

    from auto_annotate.litert import runtime_notes_hidden  # grappler's native log lines

    try:  # public in effect (the TFLite converter freezes this way); no tf.* name in TF 2.20
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )
        with runtime_notes_hidden():
            frozen = convert_variables_to_constants_v2(function)
        if len(frozen.inputs) != 1:
            raise ValueError(f"{len(frozen.inputs) - 1} resource(s) besides the variables")
    except Exception as error:  # any failure: the model still runs unfrozen
        LOG.info("%s: running the graph with variables (cannot freeze it: %s)",
                 source, error_line(error))
        return function
    structure = function.structured_outputs
    (name,) = function.structured_input_signature[1]

    def call(**inputs):
        return tf.nest.pack_sequence_as(structure, frozen(inputs[name]))
    return call


class SavedModelDetector:
    """A :class:`Detector` backed by a SavedModel's ``serving_default`` signature, frozen
    (:func:`frozen_function`) unless ``freeze`` is False."""

    def __init__(self, saved_model_path: str | Path, batch_size: int = 1,
                 freeze: bool = True) -> None:
        self.path = Path(saved_model_path)
        loaded, function, self.spec = load_signature(self.path)
        self._function = frozen_function(function, self.path) if freeze else function
        # a frozen graph holds the weights as constants: the SavedModel's variables (a
        # second copy of the weights) are kept only for a graph that runs with them
        self._loaded = loaded if self._function is function else None
        if self.spec.batch is None:
            self.max_batch = max(1, batch_size)
        else:
            self.max_batch = max(1, self.spec.batch)
            if batch_size > 1 and self.spec.batch != batch_size:
                LOG.info("%s accepts batches of %d only (asked for %d)",
                         self.path, self.max_batch, batch_size)
        LOG.info("model %s: %s, running batches of %d",
                 self.path, self.spec.describe(), self.max_batch)

    def batch_key(self, image_hw: tuple[int, int]) -> Hashable:
        """Fixed-size models batch any images; others batch images of equal size only."""
        return None if self.spec.size_hw is not None else tuple(image_hw)

    def _prepare(self, image: np.ndarray) -> tuple[object, Letterbox | None]:
        """The model's input for one image, and its letterbox for a fixed-size input."""
        if self.spec.dtype == "string":
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
            return buffer.getvalue(), None
        if self.spec.size_hw is not None:
            return letterbox_image(image, self.spec.size_hw, self.spec.dtype)
        return (image.astype(np.float32) if self.spec.dtype == "float32" else image), None

    def _run(self, prepared: list) -> dict[str, np.ndarray]:
        import tensorflow as tf

        count = len(prepared)
        if self.spec.batch not in (None, 0) and count < self.spec.batch:
            prepared = prepared + [prepared[-1]] * (self.spec.batch - count)
        if self.spec.batch == 0:
            batch = prepared[0]
        elif self.spec.dtype == "string":
            batch = np.array(prepared, dtype=object)
        else:
            batch = np.stack(prepared)
        outputs = self._function(**{self.spec.name: tf.constant(batch)})
        result = {key: np.asarray(value) for key, value in outputs.items()}
        if self.spec.batch == 0 or result["detection_scores"].ndim == 1:
            result = {key: value[None] for key, value in result.items()}
        return {key: value[:count] for key, value in result.items()}

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detects on uint8 RGB images of any size; boxes in each image's pixel frame."""
        groups: dict[Hashable, list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(self.batch_key(image.shape[:2]), []).append(index)
        results: list[Detections | None] = [None] * len(images)
        for indices in groups.values():
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start:start + self.max_batch]
                prepared = [self._prepare(images[i]) for i in chunk]
                outputs = self._run([model_input for model_input, _ in prepared])
                for row, (index, (_, letterbox)) in enumerate(zip(chunk, prepared, strict=True)):
                    results[index] = outputs_to_detections(outputs, row, images[index].shape[:2],
                                                           letterbox)
        return results


def outputs_to_detections(outputs: dict[str, np.ndarray], row: int,
                          image_hw: tuple[int, int],
                          letterbox: Letterbox | None = None) -> Detections:
    """Row ``row`` of the model outputs as Detections in the pixel frame of ``image_hw``.

    Every output is cut to ``num_detections`` when the model has it. Boxes are normalized
    yxyx relative to the image, or, with ``letterbox``, relative to the letterboxed input.
    """
    boxes = outputs["detection_boxes"][row].reshape(-1, 4)
    scores = outputs["detection_scores"][row].reshape(-1)
    classes = outputs["detection_classes"][row].reshape(-1)
    count = len(scores)
    if "num_detections" in outputs:
        count = min(count, int(np.asarray(outputs["num_detections"][row]).reshape(-1)[0]))
    count = max(count, 0)
    pixels = box_ops.normalized_yxyx_to_pixel_xyxy(boxes[:count], image_hw) \
        if letterbox is None else letterbox.to_image(boxes[:count])
    return Detections(pixels, scores[:count], np.rint(classes[:count]).astype(np.int64))


MODEL_KINDS = "a SavedModel folder (with saved_model.pb) or a .tflite file"


def model_kind(path: str | Path) -> str:
    """``"saved_model"`` for a folder holding ``saved_model.pb``, ``"tflite"`` for a
    ``.tflite`` file; ModelError naming the path for anything else."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "saved_model"
        raise ModelError(path, f"folder without saved_model.pb; expected {MODEL_KINDS}")
    if not path.exists():
        raise ModelError(path, f"model does not exist; expected {MODEL_KINDS}")
    if path.suffix.lower() == ".tflite":
        return "tflite"
    hint = " (give its folder)" if path.name == "saved_model.pb" else ""
    raise ModelError(path, f"not a model{hint}; expected {MODEL_KINDS}")


def load_detector(path: str | Path, batch_size: int = 1, freeze: bool = True) -> Detector:
    """The detector for a model path: a SavedModel folder or a ``.tflite`` file.

    Args:
        path: a folder holding ``saved_model.pb`` (run with TensorFlow) or a ``.tflite``
            file (run with LiteRT, without TensorFlow).
        batch_size: images per model call where the model takes batches; a ``.tflite``
            model runs them one by one.
        freeze: run a SavedModel's graph with its variables as constants (faster, same
            detections; see :func:`frozen_function`).

    Raises:
        ModelError: the path is neither, or the model cannot be loaded or used; raised
            before any image.
    """
    if model_kind(path) == "tflite":
        from auto_annotate.litert import TFLiteDetector

        return TFLiteDetector(path, batch_size)
    return SavedModelDetector(path, batch_size, freeze)
