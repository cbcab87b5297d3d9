"""Warm start from a SavedModel made by ``tsoda export``.

A shipped detector is a SavedModel, not a training checkpoint, and its variables are stored
under the export module's layout, which a training checkpoint cannot restore from. The
exported model keeps each part's ``variables`` list in the order Keras created it, so a model
built from the same config takes its weights from there part by part (backbone, decoder,
head), with every count and shape checked.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from tsoda.errors import TrainingError

PARTS = {"backbone": "_backbone", "decoder": "_decoder", "head": "_head"}


def is_saved_model(path: str | Path) -> bool:
    return (Path(path) / "saved_model.pb").is_file()


def restore_from_saved_model(model, source: str | Path, modules: str = "all") -> int:
    """Copies the exported detector's weights into ``model`` (a RetinaNet from the same config);
    ``modules`` "all" or "backbone". Returns the number of variables restored."""
    try:
        exported = tf.saved_model.load(str(source)).model
    except (AttributeError, OSError, ValueError) as error:
        raise TrainingError(source, f"not a SavedModel made by tsoda export ({error})") from None
    parts = ["backbone"] if modules == "backbone" else list(PARTS)
    pairs = []
    for part in parts:
        target = getattr(model, part).variables
        stored = getattr(getattr(exported, PARTS[part], None), "variables", None)
        if stored is None or len(stored) != len(target):
            raise TrainingError(source, f"its {part} does not match the pipeline.config's model "
                                        f"({len(stored or [])} variables, expected {len(target)})")
        for variable, value in zip(target, stored, strict=True):
            if variable.shape != value.shape:
                raise TrainingError(source, f"its {part} does not match the pipeline.config's "
                                            f"model ({variable.name}: {value.shape}, expected "
                                            f"{variable.shape})")
        pairs += zip(target, stored, strict=True)
    for variable, value in pairs:
        variable.assign(value)
    return len(pairs)
