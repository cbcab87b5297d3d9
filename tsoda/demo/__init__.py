"""``python -m tsoda demo``: the whole product on 30 bundled flame photographs.

1. auto_annotate labels the 22 unlabelled photos with the bundled seed detector
   (``seed_model/``, made by scripts/make_demo_model.sh; it never saw these photos).
2. A short TSODA run continues from there: each round warm-starts from the previous model
   (round 1 from the seed detector), trains on the 8 hand-labelled photos plus the labels
   accepted so far, labels the rest and accepts the confident ones.
3. It prints where the XML, the report table and the plots are, and the LabelImg command.

Everything is written under ``--work_dir``; the bundled files are only read. Running it again
with the same work dir resumes (finished steps are not redone).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SEED_MODEL = HERE / "seed_model"


@dataclass(frozen=True)
class DemoSettings:
    work_dir: Path
    threshold: float = 0.5
    uncertain_threshold: float = 0.3
    initial_steps: int = 60
    step_increment: int = 60
    rounds: int = 2
    progress: bool = True


def _copy_sample(work: Path) -> tuple[Path, Path]:
    """Copies the bundled photos into the work dir (only files not there yet)."""
    for part in ("hand", "unlabelled"):
        (work / part).mkdir(parents=True, exist_ok=True)
        for source in sorted((DATA / part).iterdir()):
            target = work / part / source.name
            if not target.exists():
                shutil.copyfile(source, target)
    return work / "hand", work / "unlabelled"


def _loop_config(work: Path):
    """The seed detector's pipeline.config, warm-starting from the seed SavedModel, written
    into ``work``; returns it parsed (a LoadedConfig)."""
    from tsoda.config.pipeline import LoadedConfig, load_pipeline_config, to_text

    pipeline = load_pipeline_config(SEED_MODEL / "pipeline.config")
    train = pipeline.train_config
    train.fine_tune_checkpoint = str(SEED_MODEL / "saved_model")
    train.fine_tune_checkpoint_type = "detection"
    pipeline.train_input_reader.label_map_path = str(DATA / "label_map.pbtxt")
    path = work / "pipeline.config"
    path.write_text(to_text(pipeline), encoding="utf-8")
    return LoadedConfig(pipeline, path)


def run_demo(settings: DemoSettings, echo=print) -> dict[str, Path]:
    """Runs the demo; returns the paths it printed."""
    from auto_annotate import AutoAnnotate

    work = Path(settings.work_dir).resolve()
    hand, unlabelled = _copy_sample(work)
    seed_labels = work / "seed_labels"
    echo(f"1/2 auto_annotate: the seed detector labels {unlabelled}")
    summary = AutoAnnotate(SEED_MODEL / "saved_model", DATA / "label_map.pbtxt", unlabelled,
                           seed_labels, threshold=settings.threshold, batch_size=8,
                           progress=settings.progress).generate_annotations()
    echo(summary.format())
    echo(f"2/2 tsoda run: {settings.rounds} rounds, warm-starting from the seed detector")
    loop_dir = work / "tsoda"
    _run_loop(settings, work, hand, unlabelled, echo)
    report = loop_dir / "report"
    paths = {"seed labels (XML)": seed_labels, "TSODA labels (XML)": loop_dir / "labels",
             "report table": report / "rounds.md", "plot: mAP": report / "map.png",
             "plot: remaining": report / "remaining.png",
             "review queue": report / "review_queue.csv"}
    echo("\n" + (report / "rounds.md").read_text(encoding="utf-8"))
    for name, path in paths.items():
        echo(f"{name + ':':20s} {path}")
    echo(f"review in LabelImg:  {sys.executable} -m auto_annotate.review "
         f"--imgs_path {unlabelled} --xml_path {loop_dir / 'labels'}")
    return paths


def _run_loop(settings: DemoSettings, work: Path, hand: Path, unlabelled: Path, echo) -> None:
    """The TSODA loop of the demo, in ``work/tsoda``, warm-started from the seed detector."""
    from auto_annotate.label_map import load_label_map
    from tsoda.loop.adapters import ModelGardenTrainer, model_detector
    from tsoda.loop.rounds import LoopSettings, TsodaLoop

    label_map = DATA / "label_map.pbtxt"
    TsodaLoop(
        LoopSettings(labeled_dir=hand, unlabeled_dir=unlabelled, work_dir=work / "tsoda",
                     threshold=settings.threshold,
                     uncertain_threshold=settings.uncertain_threshold,
                     initial_steps=settings.initial_steps,
                     step_increment=settings.step_increment, max_rounds=settings.rounds),
        ModelGardenTrainer(_loop_config(work), label_map, progress=settings.progress),
        model_detector(), load_label_map(label_map), progress=settings.progress,
        echo=echo).run()
