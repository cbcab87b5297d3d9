"""Running a LiteRT (TensorFlow Lite) ``.tflite`` detection model on the CPU, without TensorFlow.

The contract of a ``.tflite`` detection model (what ``tsoda export --format tflite`` writes):

* signature ``serving_default``; a model without any signature is read through the
  interpreter's own input and output lists;
* one input, float32 ``[1, H, W, 3]`` with fixed H and W: raw RGB 0-255, letterboxed the
  way Model Garden's parser does it (:mod:`auto_annotate.letterbox`). A uint8 input of that
  shape is accepted too when it holds raw pixels (no quantization, or scale 1 and zero
  point 0); the batch may be declared as -1 (run with 1);
* outputs ``detection_boxes`` [1, N, 4] normalized ``ymin, xmin, ymax, xmax`` relative to
  the model input, ``detection_scores`` [1, N], ``detection_classes`` [1, N] float label-map
  ids, and ``num_detections`` [1] (optional, as for SavedModels); every output is cut to
  ``num_detections``;
* H x W is the size images are fitted into (Model Garden's ``input_image_size``); any
  padding to a multiple of the coarsest feature stride happens inside the model.

Models whose unnamed outputs come from a ``TFLite_Detection_PostProcess`` op (the classic
SSD ``.tflite``) are refused with that reason: their input scaling (e.g. [-1, 1], stretched)
and their class numbering (the op's ``num_classes`` decides whether index 0 is background)
cannot be read from the outputs, and reading them wrongly would give wrong labels silently.

Anything else is refused when the detector is built, before any image, with one line
naming the file, what was found and what is expected. The runtime is ``ai-edge-litert``
(the ``litert`` extra), run on one image per call with XNNPACK (LiteRT's default): one
interpreter with one thread per CPU core, and, when images come in groups (``batch_size`` >
1), ``min(cores, batch_size)`` interpreters sharing the cores, each owned by one thread that
takes the next image as soon as it is free, across groups (LiteRT releases the GIL while it
runs; on 2 cores two single-threaded interpreters ran 1.1x the frames of one two-threaded
one, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from auto_annotate.detections import Detections
from auto_annotate.errors import ModelError, error_line
from auto_annotate.letterbox import PAD_RGB, Letterbox, letterbox_image
from auto_annotate.model import outputs_to_detections

__all__ = ["EXPECTED", "INSTALL_HINT", "Prepared", "TFLiteDetector", "TFLiteSpec", "cpu_cores",
           "inspect_input", "inspect_tflite", "open_interpreter", "runtime_notes_hidden"]

LOG = logging.getLogger(__name__)
SIGNATURE = "serving_default"
REQUIRED = ("detection_boxes", "detection_scores", "detection_classes")
OPTIONAL = ("num_detections",)
POSTPROCESS_OP = "TFLite_Detection_PostProcess"
OUTPUT_RANKS = {"detection_boxes": 3, "detection_scores": 2, "detection_classes": 2,
                "num_detections": 1}
EXPECTED = ("signature 'serving_default' (or none); one input float32 or uint8 [1, H, W, 3] "
            "with fixed H, W; outputs detection_boxes [1, N, 4], detection_scores [1, N], "
            "detection_classes [1, N] (float32), num_detections [1] optional")
INSTALL_HINT = ("reading a .tflite model needs the LiteRT runtime (ai-edge-litert), which "
                "is not installed: pip install '.[litert]'")


@dataclass(frozen=True)
class TFLiteSpec:
    """What a ``.tflite`` model takes and where its outputs are.

    Attributes:
        input_name: the input's name in the signature (or its tensor name).
        dtype: "float32" or "uint8".
        size_hw: the fixed (height, width) of the input.
        outputs: each output role (``detection_boxes``...) -> its name in the signature
            (or its tensor name).
    """

    input_name: str
    dtype: str
    size_hw: tuple[int, int]
    outputs: dict[str, str]

    def describe(self) -> str:
        return (f"input {self.input_name!r}: {self.dtype} [1, {self.size_hw[0]}, "
                f"{self.size_hw[1]}, 3] (letterboxed), named outputs")


class _PlainRunner:
    """A model without signatures, called like LiteRT's SignatureRunner (by tensor names)."""

    def __init__(self, interpreter, inputs: dict, outputs: dict) -> None:
        self._interpreter, self._inputs, self._outputs = interpreter, inputs, outputs
        self._allocated = False

    def __call__(self, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        if not self._allocated:  # on the first call, so its errors are the run's errors
            self._interpreter.allocate_tensors()
            self._allocated = True
        for name, array in arrays.items():
            self._interpreter.set_tensor(self._inputs[name]["index"], array)
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(detail["index"])
                for name, detail in self._outputs.items()}


def open_interpreter(path: Path, num_threads: int):
    """A LiteRT Interpreter for the file; ModelError if LiteRT is missing or the file is
    not a model it can read."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ModelError(path, INSTALL_HINT) from None
    if not path.is_file():
        raise ModelError(path, ".tflite file does not exist")
    try:
        return Interpreter(model_path=str(path), num_threads=num_threads)
    except Exception as error:  # LiteRT raises ValueError or RuntimeError for a bad file
        raise ModelError(path, f"cannot load .tflite model ({error_line(error)})") from None


def _entry_points(interpreter, path: Path):
    """(runner, input details, output details), by name, of ``serving_default`` or, for a
    model without signatures, of the interpreter itself."""
    signatures = interpreter.get_signature_list()
    if not signatures:
        inputs = {d["name"]: d for d in interpreter.get_input_details()}
        outputs = {d["name"]: d for d in interpreter.get_output_details()}
        return _PlainRunner(interpreter, inputs, outputs), inputs, outputs
    if SIGNATURE not in signatures:
        raise ModelError(path, f"no {SIGNATURE!r} signature (found: {sorted(signatures)}); "
                               f"expected {EXPECTED}")
    runner = interpreter.get_signature_runner(SIGNATURE)
    return runner, runner.get_input_details(), runner.get_output_details()


def _describe(name: str, detail: dict) -> str:
    dims = [int(d) for d in detail["shape_signature"]]
    return f"{name!r} {np.dtype(detail['dtype']).name} {dims}"


def inspect_input(inputs: dict, path: Path) -> tuple[str, str, tuple[int, int]]:
    """(name, dtype, (H, W)) of the model's single image input, or ModelError."""
    if len(inputs) != 1:
        raise ModelError(path, f"found inputs {sorted(inputs)}; expected {EXPECTED}")
    (name, detail), = inputs.items()
    found = f"found input {_describe(name, detail)}; expected {EXPECTED}"
    dtype, dims = np.dtype(detail["dtype"]).name, [int(d) for d in detail["shape_signature"]]
    if len(dims) == 4 and min(dims[1:3]) < 1:
        raise ModelError(path, f"{found} (height and width must be fixed: images are "
                               "letterboxed to the input's size)")
    if dtype not in ("float32", "uint8") or len(dims) != 4 or dims[0] not in (1, -1) \
            or dims[3] != 3:
        raise ModelError(path, found)
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if dtype == "uint8" and (scale, zero_point) not in ((0.0, 0), (1.0, 0)):
        raise ModelError(path, f"{found} (a uint8 input quantized with scale {scale} and "
                               f"zero point {zero_point} does not take raw 0-255 pixels)")
    return name, dtype, (dims[1], dims[2])


def _from_postprocess_op(interpreter) -> bool:
    """Whether the model ends in a TFLite_Detection_PostProcess op (for the refusal)."""
    try:
        ops = interpreter._get_ops_details()  # LiteRT's only view of the graph's ops
    except Exception:  # an interpreter without it: the refusal just says less
        return False
    return any(op.get("op_name") == POSTPROCESS_OP for op in ops)


def _check_outputs(roles: dict[str, str], outputs: dict, path: Path) -> None:
    """Refuses outputs of the wrong type or rank (ranks are checked where the file states
    them; a post-processing op sizes its outputs only when it runs)."""
    for role, name in roles.items():
        detail = outputs[name]
        dtype, dims = np.dtype(detail["dtype"]).name, list(detail["shape_signature"])
        wrong_type = dtype != "float32" and not (role == "num_detections" and
                                                  dtype in ("int32", "int64"))
        wrong_shape = bool(dims) and (len(dims) != OUTPUT_RANKS[role] or dims[0] not in (1, -1)
                                      or (role == "detection_boxes" and dims[-1] != 4))
        if wrong_type or wrong_shape:
            raise ModelError(path, f"found output {role} as {_describe(name, detail)}; "
                                   f"expected {EXPECTED}")


def inspect_tflite(interpreter, path: Path):
    """(runner, TFLiteSpec) of a loaded model, or ModelError naming what was found."""
    runner, inputs, outputs = _entry_points(interpreter, path)
    name, dtype, size_hw = inspect_input(inputs, path)
    roles = {r: r for r in REQUIRED + OPTIONAL if r in outputs}
    missing = [role for role in REQUIRED if role not in roles]
    if missing:
        why = (f"; its outputs come unnamed from a {POSTPROCESS_OP} op (a classic SSD "
               "export), whose input scaling and class numbering cannot be told from the "
               "file: export the model with tsoda export --format tflite"
               if _from_postprocess_op(interpreter) else "")
        raise ModelError(path, f"outputs {sorted(outputs)} lack {missing}{why}; "
                               f"expected {EXPECTED}")
    _check_outputs(roles, outputs, path)
    return runner, TFLiteSpec(name, dtype, size_hw, roles)


# Lines native code writes to stderr that tell a user nothing: LiteRT's XNNPACK note, and the
# TFLite converter's absl info/warning lines ("W0000 00:00:... file.cc:364] Ignored ...").
QUIET_NATIVE = re.compile(r"^(INFO: Created TensorFlow Lite XNNPACK delegate|[IW]\d{4} "
                          r"\d\d:\d\d:|WARNING: All log messages before absl::InitializeLog)")


@contextlib.contextmanager
def runtime_notes_hidden(quiet: re.Pattern = QUIET_NATIVE) -> Iterator[None]:
    """Captures what native code writes to stderr (file descriptor 2) in the block, and
    writes it back afterwards, except the lines ``quiet`` matches (logged at debug level)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 to capture
        saved = None
    with tempfile.TemporaryFile() as capture:
        if saved is not None:
            os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                if quiet.match(line):
                    LOG.debug("%s", line)
                else:
                    print(line, file=sys.stderr)


def cpu_cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Prepared:
    """An image as the model takes it: the letterboxed input and how it was fitted."""

    model_input: np.ndarray
    letterbox: Letterbox


def _claim_copy(local: threading.local, copies: Iterator[int], lock: threading.Lock) -> None:
    """Gives a new pool thread its own interpreter copy: no two threads ever share one."""
    with lock:
        local.copy = next(copies)


class TFLiteDetector:
    """A :class:`~auto_annotate.model.Detector` backed by a ``.tflite`` model (LiteRT).

    The model runs one image per call; ``max_batch`` is ``batch_size`` only so that the
    pipeline hands over images in groups. With groups (``batch_size`` > 1) and several
    cores, ``copies = min(num_threads, batch_size)`` interpreters, each on
    ``num_threads // copies`` threads, run a group's images side by side, each copy in its
    own pool thread taking the next image when it is free; :meth:`submit` starts a group
    and returns, so the next group's images follow without a pause. A lone image passed
    to :meth:`predict` (the last of a run, Beam's first batches) and every image when there
    are no groups run on one interpreter with all ``num_threads``. Every image is
    letterboxed to the model's input, so images of any size share a group. ``predict`` and
    ``submit`` may be called from several threads (Beam shares a detector between a
    worker's threads): no interpreter ever runs two images at once.

    Raises:
        ModelError: LiteRT is not installed, or the file is not a ``.tflite`` model with
            the contract in this module's docstring (checked here, before any image).
    """

    def __init__(self, path: str | Path, batch_size: int = 1,
                 num_threads: int | None = None) -> None:
        self.path = Path(path)
        threads = num_threads or cpu_cores()
        copies = max(1, min(threads, batch_size))
        with runtime_notes_hidden():
            # [0]: all threads, for lone images; [1:]: the copies that share the cores
            self._runners = [self._open(threads)]
            if copies > 1:
                self._runners += [self._open(max(1, threads // copies)) for _ in range(copies)]
            self._run_once()
        self._lock = threading.Lock()  # for [0], which any caller's thread may use
        self._local = threading.local()  # .copy: the interpreter a pool thread owns
        # the initializer must not hold self: pool threads keep it while they live
        self._pool = ThreadPoolExecutor(
            copies, "litert", initializer=_claim_copy,
            initargs=(self._local, iter(range(1, copies + 1)), threading.Lock())) \
            if copies > 1 else None
        self.max_batch = max(1, batch_size)
        LOG.info("model %s: %s, one image per call, %d interpreter(s) side by side",
                 self.path, self.spec.describe(), copies)

    def _open(self, threads: int) -> tuple:
        """(interpreter, runner): the interpreter must stay referenced beside its runner."""
        interpreter = open_interpreter(self.path, threads)
        runner, self.spec = inspect_tflite(interpreter, self.path)
        return interpreter, runner

    def _run_once(self) -> None:
        """Runs the model on a blank input, so a model that cannot run (an operation LiteRT
        lacks, outputs of the wrong shape) is refused before any image."""
        blank = np.empty((*self.spec.size_hw, 3), dtype=np.float32)
        blank[:] = np.asarray(PAD_RGB, dtype=np.float32)
        blank = blank.round().astype(self.spec.dtype)
        try:
            outputs_to_detections(self._outputs(blank), 0, self.spec.size_hw)
        except Exception as error:  # anything the runtime or the outputs raise
            raise ModelError(self.path, f"cannot run the model ({error_line(error)}); "
                                        f"expected {EXPECTED}") from None

    def batch_key(self, image_hw: tuple[int, int]) -> Hashable:
        """Every image is letterboxed to the input size: any images may share a group."""
        return None

    def _outputs(self, model_input: np.ndarray, copy: int = 0) -> dict[str, np.ndarray]:
        """The model (interpreter ``copy``) on one input, as role -> array with a leading
        batch axis."""
        raw = self._runners[copy][1](**{self.spec.input_name: model_input[None]})
        outputs = {role: np.asarray(raw[name]) for role, name in self.spec.outputs.items()}
        if outputs["detection_scores"].ndim == 1:  # a model that drops the batch axis
            outputs = {role: value[None] for role, value in outputs.items()}
        return outputs

    def prepare(self, image: np.ndarray) -> Prepared:
        """The model input of a uint8 RGB image: letterboxed (run in the decoding threads)."""
        return Prepared(*letterbox_image(image, self.spec.size_hw, self.spec.dtype))

    def predict(self, images: Sequence[np.ndarray | Prepared]) -> list[Detections]:
        """Detects on uint8 RGB images of any size, or on what :meth:`prepare` made of
        them; boxes in each image's pixel frame."""
        ready = [self._prepared(image) for image in images]
        if self._pool is None or len(ready) < 2:
            with self._lock:
                outputs = [self._outputs(one.model_input) for one in ready]
            return self._detections(outputs, ready)
        return self.submit(ready).result()

    def submit(self, images: Sequence[np.ndarray | Prepared]) -> _Submitted:
        """Starts :meth:`predict` on the images and returns at once (see
        :class:`auto_annotate.model.Detector`): each image goes to the next free copy, so
        the images of successive calls run back to back, without waiting for each other."""
        ready = [self._prepared(image) for image in images]
        if self._pool is None:
            return _Submitted([self._pool_of_one(ready)], lambda outputs: outputs[0])
        futures = [self._pool.submit(self._on_own_copy, one.model_input) for one in ready]
        return _Submitted(futures, lambda outputs: self._detections(outputs, ready))

    def _pool_of_one(self, ready: list[Prepared]) -> Future:
        """Without copies: the images run now, in this thread; a finished future."""
        future: Future = Future()
        try:
            future.set_result(self.predict(ready))
        except Exception as error:  # kept for result(), as a pool's future keeps it
            future.set_exception(error)
        return future

    def _prepared(self, image: np.ndarray | Prepared) -> Prepared:
        return image if isinstance(image, Prepared) else self.prepare(image)

    def _on_own_copy(self, model_input: np.ndarray) -> dict[str, np.ndarray]:
        return self._outputs(model_input, self._local.copy)

    @staticmethod
    def _detections(outputs: list[dict[str, np.ndarray]],
                    ready: list[Prepared]) -> list[Detections]:
        return [outputs_to_detections(out, 0, one.letterbox.image_hw, one.letterbox)
                for out, one in zip(outputs, ready, strict=True)]


class _Submitted:
    """A batch running on the copies: ``done()``, and ``result()``, which waits for every
    image of it before it returns or raises the first image's error."""

    def __init__(self, futures: list[Future], finish) -> None:
        self._futures, self._finish = futures, finish

    def done(self) -> bool:
        return all(future.done() for future in self._futures)

    def result(self) -> list[Detections]:
        wait(self._futures)
        return self._finish([future.result() for future in self._futures])
