"""A class's results as a lecturer keeps them: the gradebook (CSV + JSON) and one feedback file per submission.

* ``grades.csv``: UTF-8 with a byte-order mark (spreadsheets then read accented names), a row per student, a column
  per exercise (``02 idle_fraction (/2)``), ``total``, ``max``, ``status`` (per notebook: graded, graded (time
  limit), not graded: why, missing), ``seed`` and ``review`` (cells to read by hand: ``review.py``). A cell that a spreadsheet would read as a formula (a name starting
  with ``=``, ``+``, ``-`` or ``@``) is written with a leading apostrophe.
* ``grades.json`` beside it: every result (messages, cell errors, seconds, seed) and the files left out; grading more
  submissions into the same gradebook keeps the other rows and reuses the seed.
* ``DIR/STUDENT/NN_name.txt``: the score table with what failed and why, in the words of the notebook's own check.
"""
from __future__ import annotations

import csv
import json
import os
import re

__all__ = ["feedback_text", "read_previous", "write_feedback", "write_gradebook"]

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def read_previous(gradebook: str) -> tuple[int | None, dict]:
    """(seed, {(student, notebook): result}) of an earlier run into this gradebook (its JSON), or (None, {})."""
    path = os.path.splitext(gradebook)[0] + ".json"
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return int(data["seed"]), {(r["student"], r["number"]): r for r in data.get("results", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return None, {}


def _columns(results: dict) -> dict:
    columns = {}  # (notebook, exercise) -> max points, notebooks in order
    for (_, number), result in sorted(results.items(), key=lambda kv: kv[0][1]):
        for entry in result.get("exercises", []):
            columns.setdefault((number, entry["name"]), entry["max_points"])
    return columns


def write_gradebook(gradebook: str, results: dict, seed: int, left_out: list) -> None:
    """Write the CSV (a row per student) and the JSON beside it. ``results``: {(student, number): result dict}."""
    columns = _columns(results)
    numbers = sorted({number for _, number in results})
    with open(gradebook, "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student"] + [f"{n} {name} (/{points:g})" for (n, name), points in columns.items()]
                        + ["total", "max", "status", "seed", "review"])
        for student in sorted({s for s, _ in results}, key=str.lower):
            row, total, status, review = [_cell(student)], 0.0, [], []
            for number, name in columns:
                result = results.get((student, number)) or {}
                entry = next((e for e in result.get("exercises", []) if e["name"] == name), None)
                row.append("" if entry is None else f"{entry['points']:g}")
                total += entry["points"] if entry else 0.0
            for number in numbers:
                result = results.get((student, number))
                status.append(f"{number}: {'missing' if result is None else result['status']}")
                review += [f"{number}: {note}" for note in (result or {}).get("review", [])]
            maximum = sum(p for (n, _), p in columns.items())
            writer.writerow(row + [f"{round(total, 4):g}", f"{maximum:g}", _cell("; ".join(status)), seed,
                                    _cell("; ".join(review))])
    with open(os.path.splitext(gradebook)[0] + ".json", "w", encoding="utf-8") as handle:
        json.dump({"seed": seed, "results": [{"student": s, "number": n, **r} for (s, n), r in sorted(results.items())],
                   "left_out": [{"file": f, "why": why} for f, why in left_out]}, handle, indent=1)


def feedback_text(result: dict) -> str:
    """What a student gets back: the score table (each failed case as the notebook's check words it) or why the
    notebook could not be graded."""
    from .grader import format_table
    if not result.get("exercises"):
        return f"{result.get('notebook', '')}\n{result['status']}\n"
    table = format_table(result)
    lines = [table.replace(result["notebook"], os.path.basename(result["notebook"]), 1)]
    if result["status"] != "graded":
        lines.append(result["status"])
    return "\n".join(lines) + "\n"


def _safe(name: str) -> str:
    return re.sub(r"[^\w .@+-]", "_", name).strip(" .") or "student"


def write_feedback(folder: str, results: dict, stems: dict) -> list:
    """``folder/STUDENT/NN_name.txt`` for each result; the paths written. ``stems``: {number: "NN_name"}."""
    written = []
    for (student, number), result in sorted(results.items()):
        target = os.path.join(folder, _safe(student))
        os.makedirs(target, exist_ok=True)
        path = os.path.join(target, f"{stems.get(number, number)}.txt")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(feedback_text(result))
        written.append(path)
    return written
