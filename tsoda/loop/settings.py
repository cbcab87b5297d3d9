"""The TSODA loop's parameters: the flags of ``tsoda run`` (and ``tsoda simulate``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# a work dir keeps these from its first run: a later run with others is refused
FIXED_SETTINGS = ("labeled_dir", "unlabeled_dir", "seed", "test_fraction")


@dataclass(frozen=True)
class LoopSettings:
    """The run's parameters (flags of ``tsoda run``)."""

    labeled_dir: Path
    unlabeled_dir: Path
    work_dir: Path
    threshold: float | None = None            # None: chosen each round (tsoda/loop/thresholds.py)
    uncertain_threshold: float | None = None  # None: chosen each round, <= threshold
    target_precision: float = 0.9
    target_recall: float = 0.9
    min_holdout_boxes: int = 10
    ignore_regions: bool = True  # uncertain detections: ignore regions (else hold back)
    tta: tuple[str, ...] = ()    # test-time augmentation views for labelling (auto_annotate.tta)
    # accepted labels as a separate stream (tsoda/modeling/task.py PseudoStream); share 0:
    # one stream
    pseudo_share: float = 0.0
    pseudo_weight: float = 1.0
    pseudo_background: float = 1.0
    pseudo_box_loss: bool = True
    strong_augment: bool = False
    initial_steps: int = 2500
    step_increment: int = 1500
    max_steps: int = 8500
    max_rounds: int | None = None
    test_fraction: float = 0.2
    seed: int = 0

    def steps_for(self, number: int) -> int:
        return min(self.initial_steps + (number - 1) * self.step_increment, self.max_steps)

    def validate(self) -> None:
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        for name in ("threshold", "uncertain_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if None not in (self.threshold, self.uncertain_threshold) and \
                self.uncertain_threshold > self.threshold:
            raise ValueError("need uncertain_threshold <= threshold")
        if not 0.0 <= self.pseudo_share < 1.0:
            raise ValueError(f"pseudo_share must be in [0, 1), got {self.pseudo_share}")
        if min(self.pseudo_weight, self.pseudo_background) < 0:
            raise ValueError("pseudo_weight and pseudo_background must be >= 0")
        for name in ("target_precision", "target_recall"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if min(self.initial_steps, self.max_steps) < 1 or self.step_increment < 0:
            raise ValueError("steps must be positive")
        if Path(self.labeled_dir).resolve() == Path(self.unlabeled_dir).resolve():
            raise ValueError("labeled_dir and unlabeled_dir must be different folders")
