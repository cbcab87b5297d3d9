"""One training for every run that starts the same way: ``tsoda simulate``'s first stages.

The loop's first round trains on the hand images only, from the initial checkpoint, for the
first round's steps; so does the first stage of the hand-only baseline, and so does the first
round of the loop under every other setting of the same seed. :class:`SharedFirstStage` wraps
a trainer and trains each distinct first stage once per seed: the runs then differ only in
what comes after, so settings are compared on one and the same round-1 model (paired, without
the 0.02-0.03 mAP spread between repeats of one training) and each further setting saves a
round of training.

A first stage is identified by the trainer's fingerprint (config and label map), the steps,
the warm start and the content of its training examples (a digest of the serialized
``tf.train.Example`` records, in any order and sharding). Anything else (a later round, a
pseudo-label stream) trains as usual.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from auto_annotate.fileio import atomic_write_text

DONE = "stage.json"


def records_digest(records: str) -> str:
    """SHA-256 over the sorted digests of every record matched by the glob ``records``."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(records))
    digests = sorted(hashlib.sha256(record.numpy()).digest()
                     for record in tf.data.TFRecordDataset(files))
    return hashlib.sha256(b"".join(digests)).hexdigest()


def trainer_fingerprint(trainer) -> str:
    """What identifies a trainer's models besides data and steps (its config)."""
    fingerprint = getattr(trainer, "fingerprint", None)
    return fingerprint() if callable(fingerprint) else type(trainer).__name__


class SharedFirstStage:
    """A trainer (the loop's ``Trainer`` protocol) whose first stages are trained once.

    Args:
        trainer: the trainer doing the work.
        folder: where shared stages live, one subfolder each (``stage-<key>``).
        echo: says when a stage is reused.
    """

    def __init__(self, trainer, folder: str | Path, echo=print) -> None:
        self.trainer, self.folder, self.echo = trainer, Path(folder), echo

    @property
    def initial_checkpoint(self) -> str | None:
        return self.trainer.initial_checkpoint

    def fingerprint(self) -> str:
        return trainer_fingerprint(self.trainer)

    def train(self, round_dir: Path, records: str, steps: int, warm_start: str | None,
              pseudo=None) -> str:
        if pseudo is not None or warm_start != self.trainer.initial_checkpoint:
            return self.trainer.train(round_dir, records, steps, warm_start, pseudo=pseudo)
        key = hashlib.sha256(json.dumps(
            [self.fingerprint(), steps, warm_start, records_digest(records)]).encode())
        stage = self.folder / f"stage-{key.hexdigest()[:10]}"
        done = stage / DONE
        if done.is_file():
            self.echo(f"first stage: reusing {stage.name} ({steps} steps on the same "
                      "examples, trained before)")
        else:
            stage.mkdir(parents=True, exist_ok=True)
            checkpoint = self.trainer.train(stage, records, steps, warm_start)
            atomic_write_text(done, json.dumps({"checkpoint": str(checkpoint)}) + "\n")
        config = stage / "pipeline.config"
        if config.is_file():  # what trained the checkpoint, beside the round that uses it
            Path(round_dir).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(config, Path(round_dir) / "pipeline.config")
        return json.loads(done.read_text())["checkpoint"]

    def export(self, round_dir: Path, checkpoint: str) -> Path:
        return self.trainer.export(round_dir, checkpoint)
