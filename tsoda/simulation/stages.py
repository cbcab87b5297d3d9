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
pseudo-label stream, a round whose own model folder already holds a checkpoint, i.e. one
begun before stages were shared) trains as usual. A stage records its checkpoint relative to
its folder; one whose checkpoint is gone is trained again, and one that diverged is reported
as diverged to every run that needs it (``diverged.json``; delete it to retry).

Time: a run that reuses a stage spends no training time on it, so its round-1 minutes are
those of export and labelling only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from auto_annotate.fileio import atomic_write_text
from tsoda.errors import DivergedError

DONE = "stage.json"
DIVERGED = "diverged.json"


def _any_checkpoint(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a TF checkpoint."""
    return (model_dir / "checkpoint").is_file() or any(model_dir.glob("*.index"))


def _checkpoint_exists(checkpoint: str) -> bool:
    """Whether a checkpoint prefix exists: its index file, or the file itself (test fakes)."""
    return Path(checkpoint + ".index").is_file() or Path(checkpoint).is_file()


def mark_diverged(folder: Path, error: DivergedError) -> None:
    """Records in ``folder`` that its training diverged (read back by every later run)."""
    atomic_write_text(Path(folder) / DIVERGED, json.dumps({"step": error.step,
                                                           "error": str(error)}))


def records_digest(records: str) -> str:
    """SHA-256 over the sorted digests of every ``tf.train.Example`` matched by the glob
    ``records``, each serialized deterministically: the same example written by two
    processes can differ in bytes (the order of its feature map is not fixed)."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(records))
    digests = sorted(
        hashlib.sha256(tf.train.Example.FromString(record.numpy())
                       .SerializeToString(deterministic=True)).digest()
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
        if pseudo is not None or warm_start != self.trainer.initial_checkpoint or \
                _any_checkpoint(Path(round_dir) / "model"):  # begun in place: resume there
            return self.trainer.train(round_dir, records, steps, warm_start, pseudo=pseudo)
        stage = self._stage(records, steps, warm_start)
        checkpoint = self._trained(stage)
        if checkpoint is not None:
            self.echo(f"first stage: reusing {stage.name} ({steps} steps on the same "
                      "examples, trained before)")
        else:
            checkpoint = self._train(stage, records, steps, warm_start)
        config = stage / "pipeline.config"
        if config.is_file():  # what trained the checkpoint, beside the round that uses it
            Path(round_dir).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(config, Path(round_dir) / "pipeline.config")
        return checkpoint

    def _stage(self, records: str, steps: int, warm_start: str | None) -> Path:
        key = hashlib.sha256(json.dumps(
            [self.fingerprint(), steps, warm_start, records_digest(records)]).encode())
        return self.folder / f"stage-{key.hexdigest()[:10]}"

    @staticmethod
    def _trained(stage: Path) -> str | None:
        """The stage's checkpoint if it finished and is still there; raises DivergedError
        again for a stage that diverged (delete its diverged.json to retry)."""
        diverged = stage / DIVERGED
        if diverged.is_file():
            raise DivergedError(stage, json.loads(diverged.read_text())["step"])
        done = stage / DONE
        if not done.is_file():
            return None
        checkpoint = str(stage / json.loads(done.read_text())["checkpoint"])
        if not _checkpoint_exists(checkpoint):
            done.unlink()  # its checkpoint is gone: train it again
            return None
        return checkpoint

    def _train(self, stage: Path, records: str, steps: int, warm_start: str | None) -> str:
        stage.mkdir(parents=True, exist_ok=True)
        try:
            checkpoint = self.trainer.train(stage, records, steps, warm_start)
        except DivergedError as error:
            mark_diverged(stage, error)
            raise
        relative = Path(checkpoint).resolve().relative_to(stage.resolve())
        atomic_write_text(stage / DONE, json.dumps({"checkpoint": str(relative)}) + "\n")
        return str(stage / relative)

    def export(self, round_dir: Path, checkpoint: str) -> Path:
        return self.trainer.export(round_dir, checkpoint)
