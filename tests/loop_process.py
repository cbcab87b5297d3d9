"""Runs the TSODA loop with fakes in its own process, for the SIGKILL test.

python -m tests.loop_process ROOT WORK_DIR [train|label]: sleeps in that stage (after
writing a marker file) so the test can kill the process there.
"""

import sys
from pathlib import Path

from auto_annotate.label_map import parse_label_map
from tests.helpers import LABEL_MAP
from tests.loop_fakes import FakeTrainer, RoundDetector
from tsoda.loop.rounds import LoopSettings, TsodaLoop


def main(root: Path, work: Path, sleep_in: str | None) -> None:
    marker = work / "in_label"
    trainer = FakeTrainer(root / "calls.jsonl", sleep_in="train" if sleep_in == "train" else None)
    factory = (lambda path: RoundDetector(path, marker)) if sleep_in == "label" else RoundDetector
    settings = LoopSettings(labeled_dir=root / "L", unlabeled_dir=root / "U", work_dir=work,
                            threshold=0.9, uncertain_threshold=0.5, ignore_regions=False,
                            initial_steps=100, step_increment=50,
                            max_steps=180, test_fraction=0.25, seed=3)
    TsodaLoop(settings, trainer, factory, parse_label_map(LABEL_MAP), progress=False).run()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
