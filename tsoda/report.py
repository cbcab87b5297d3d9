"""The TSODA report under ``W/report/``: a table per round (Markdown and CSV), plots of mAP
and of the images left to label, and the review queue (least certain labels first)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from auto_annotate.fileio import atomic_write_bytes, atomic_write_text

COLUMNS = ("round", "steps", "hand", "verified", "auto", "accepted", "held_back", "remaining",
           "hand_map50", "hand_map50_95", "auto_map50", "minutes")


def round_rows(journal) -> list[dict]:
    """One dict per finished round, with the label counts as they were after it."""
    rows = []
    for r in journal.rounds():
        if not r.done:
            continue
        counts = journal.get_meta(f"counts/{r.round}") or {}
        hand, auto = r.metrics.get("hand", {}), r.metrics.get("auto", {})
        rows.append({
            "round": r.round, "steps": r.steps, "hand": counts.get("hand", 0),
            "verified": counts.get("verified", 0), "auto": counts.get("auto", 0),
            "accepted": r.accepted, "held_back": r.held_back,
            "remaining": counts.get("unlabelled", 0),
            "hand_map50": _fmt(hand.get("map50")), "hand_map50_95": _fmt(hand.get("map50_95")),
            "auto_map50": _fmt(auto.get("map50")), "minutes": f"{r.seconds / 60:.1f}"})
    return rows


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], columns) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _plot(rows: list[dict], path: Path, series: dict[str, str], ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(5, 3.2), dpi=100)
    rounds = [row["round"] for row in rows]
    for key, label in series.items():
        values = [float(row[key]) if row[key] != "" else float("nan") for row in rows]
        axes.plot(rounds, values, marker="o", label=label)
    axes.set_xlabel("round")
    axes.set_ylabel(ylabel)
    axes.set_xticks(rounds)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def review_queue(journal) -> list[dict]:
    """Held-back images first, then accepted labels by their lowest box score."""
    queue = []
    for key in journal.meta_keys("held_back/"):
        for image_id, score in journal.get_meta(key):
            queue.append({"round": int(key.split("/")[1]), "image": image_id, "status":
                          "held back: a detection below the threshold", "boxes": "",
                          "min_score": "", "max_score": _fmt(score), "split": ""})
    queue = [q for q in queue if q["image"] in {r.id for r in journal.images("unlabelled")}]
    accepted = sorted(journal.images("auto"), key=lambda r: (r.min_score or 0.0, r.id))
    queue += [{"round": r.round, "image": r.id, "status": "auto", "boxes": r.boxes,
               "min_score": _fmt(r.min_score), "max_score": _fmt(r.max_score),
               "split": r.split} for r in accepted]
    return queue


def write_report(journal, report_dir: str | Path, echo=None) -> str:
    """Writes every report file; returns the newest round's table line (or '')."""
    report_dir = Path(report_dir)
    rows = round_rows(journal)
    atomic_write_text(report_dir / "rounds.md", _markdown(rows))
    atomic_write_text(report_dir / "rounds.csv", to_csv(rows, COLUMNS))
    queue = review_queue(journal)
    atomic_write_text(report_dir / "review_queue.csv",
                      to_csv(queue, ("round", "image", "status", "boxes", "min_score",
                                   "max_score", "split")))
    if rows:
        _plot(rows, report_dir / "map.png", {"hand_map50": "mAP@0.5 (hand test)",
                                             "hand_map50_95": "mAP@0.5:0.95 (hand test)"},
              "mAP")
        _plot(rows, report_dir / "remaining.png", {"remaining": "unlabelled images left"},
              "images")
    if echo is not None:
        echo(f"report: {report_dir}/rounds.md, rounds.csv, map.png, remaining.png, "
             f"review_queue.csv")
    if not rows:
        return ""
    header = _markdown(rows).splitlines()
    return "\n".join(header[:2] + [header[-1]]) if len(rows) == 1 else header[-1]
