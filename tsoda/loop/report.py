"""The TSODA report under ``W/report/``: a table per round (Markdown and CSV), plots of mAP
and of the images left to label, and the review queue (least certain labels first)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from auto_annotate.fileio import atomic_write_bytes, atomic_write_text
from tsoda.loop.journal import Status

COLUMNS = ("round", "steps", "hand", "verified", "auto", "accepted", "held_back", "remaining",
           "accept_at", "uncertain_at", "est_precision", "hand_map50", "hand_map50_95",
           "auto_map50", "minutes")


def round_rows(journal) -> list[dict]:
    """One dict per finished round, with the label counts as they were after it."""
    rows = []
    for r in journal.rounds():
        if not r.done:
            continue
        counts = journal.get_meta(f"counts/{r.round}") or {}
        hand, auto = r.metrics.get("hand", {}), r.metrics.get("auto", {})
        chosen = journal.get_meta(f"thresholds/{r.round}") or {}
        none = (chosen.get("accept") or 0) > 1  # nothing accepted: no precision to show
        rows.append({
            "round": r.round, "steps": r.steps, "hand": counts.get(Status.HAND, 0),
            "verified": counts.get(Status.VERIFIED, 0), "auto": counts.get(Status.AUTO, 0),
            "accepted": r.accepted, "held_back": r.held_back,
            "remaining": counts.get(Status.UNLABELLED, 0),
            "accept_at": "none" if none else _fmt(chosen.get("accept"), 3),
            "uncertain_at": _fmt(chosen.get("uncertain"), 3),
            "est_precision": "" if none else _fmt(chosen.get("precision"), 2),
            "hand_map50": _fmt(hand.get("map50")), "hand_map50_95": _fmt(hand.get("map50_95")),
            "auto_map50": _fmt(auto.get("map50")), "minutes": f"{r.seconds / 60:.1f}"})
    return rows


def _fmt(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: list[dict], columns=None) -> str:
    """A Markdown table of ``rows`` (default columns: every key, in order of appearance)."""
    columns = list(columns) if columns is not None else \
        list(dict.fromkeys(c for row in rows for c in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _markdown(rows: list[dict]) -> str:
    return markdown_table(rows, COLUMNS)


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


QUEUE_COLUMNS = ("round", "image", "status", "boxes", "min_score", "max_score", "split",
                 "path", "xml")


def review_queue(journal) -> list[dict]:
    """Held-back images first (the newest round's first, most confident first), then
    accepted labels by their lowest box score. ``path`` and ``xml`` are the files, for
    ``python -m auto_annotate.review --queue``."""
    unlabelled = {r.id: r for r in journal.images(Status.UNLABELLED)}
    queue, seen = [], set()
    for key in sorted(journal.meta_keys("held_back/"), key=lambda k: -int(k.split("/")[1])):
        for image_id, score in sorted(journal.get_meta(key), key=lambda item: -item[1]):
            if image_id not in unlabelled or image_id in seen:
                continue
            seen.add(image_id)
            queue.append({"round": int(key.split("/")[1]), "image": image_id, "status":
                          "held back: uncertain detections (suggestions)", "boxes": "",
                          "min_score": "", "max_score": _fmt(score), "split": "",
                          "path": unlabelled[image_id].image, "xml": unlabelled[image_id].xml})
    accepted = sorted(journal.images(Status.AUTO), key=lambda r: (r.min_score or 0.0, r.id))
    queue += [{"round": r.round, "image": r.id, "status": Status.AUTO.value, "boxes": r.boxes,
               "min_score": _fmt(r.min_score), "max_score": _fmt(r.max_score),
               "split": r.split, "path": r.image, "xml": r.xml} for r in accepted]
    return queue


def write_report(journal, report_dir: str | Path, echo=None) -> str:
    """Writes every report file; returns the newest round's table line (or '')."""
    report_dir = Path(report_dir)
    rows = round_rows(journal)
    atomic_write_text(report_dir / "rounds.md", _markdown(rows))
    atomic_write_text(report_dir / "rounds.csv", to_csv(rows, COLUMNS))
    queue = review_queue(journal)
    atomic_write_text(report_dir / "review_queue.csv",
                      to_csv(queue, QUEUE_COLUMNS))
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
