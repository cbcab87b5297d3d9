"""What the console shows: our own lines; TensorFlow's start-up noise only when asked.

TensorFlow's C++ logging (``failed call to cuInit``, oneDNN and CPU-feature notes) reads
``TF_CPP_MIN_LOG_LEVEL`` once, when TensorFlow is first imported, so
:func:`setup_console` must run before that. A value the user set is kept.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable

__all__ = ["INTERRUPTED", "USAGE_ERROR", "run_command", "setup_console"]

# tf_keras warns on every Model Garden training call that the input dict has a key the
# model does not use (the source id); it is expected and says nothing to a user.
_KERAS_INPUT_WARNING = r"Input dict contained keys"
_NOISY_LOGGERS = ("absl", "tensorflow", "h5py", "matplotlib", "PIL")


def setup_console(verbose: bool = False, level: int = logging.WARNING) -> None:
    """Configures logging and silences TensorFlow's noise unless ``verbose``.

    Args:
        verbose: show TensorFlow's own logging and warnings, and our INFO lines.
        level: the level of our own log lines when not verbose.
    """
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        warnings.filterwarnings("ignore", message=_KERAS_INPUT_WARNING)
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    logging.basicConfig(level=min(level, logging.INFO) if verbose else level,
                        format="%(levelname)s: %(message)s")
    if verbose:  # the traceback behind an `error:` line (run_command)
        logging.getLogger(__name__).setLevel(logging.DEBUG)


USAGE_ERROR = 2
INTERRUPTED = 130


def run_command(body: Callable[[], int], interrupted: str | None = None) -> int:
    """Runs a command's body and returns its exit status.

    An expected error (:class:`AnnotateError`, ``ValueError``) becomes one line
    ``error: ...`` on stderr and status 2 (its traceback is logged at debug level: shown
    with ``--verbose``); Ctrl-C becomes ``interrupted: <hint>`` and
    status 130 when ``interrupted`` says what to do next (else it propagates). Every command
    line of the project ends this way, so scripts can rely on the statuses.
    """
    from auto_annotate.errors import AnnotateError

    try:
        return body()
    except (AnnotateError, ValueError) as error:
        logging.getLogger(__name__).debug("the error's traceback", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return INTERRUPTED
