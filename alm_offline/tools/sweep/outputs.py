"""What a sweep writes: its record (``sweep.json``), ``results.csv``, ``results.md`` (one
table format for online and offline grids) and ``curves.png``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alm_offline.config import BASELINE_METHODS, ONLINE_BASELINES, run_mode
from alm_offline.runtime.files import write_text_atomic
from alm_offline.tools.stats import (
    LAST_EVALS,
    final_score,
    probability_of_improvement,
    summarise_seeds,
)
from alm_offline.tools.sweep.spec import SweepError, cell_slugs
from alm_offline.training.loggers import read_jsonl

SWEEP_FILE = "sweep.json"
CSV_COLUMNS = (
    "env",
    "dataset",
    "method",
    "seed",
    "status",
    "eval_return_mean",
    "eval_return_std",
    "normalized_score_mean",
    "env_steps",
    "updates",
    "updates_per_sec",
    "wall_seconds",
    "run_dir",
    "error",
    "trial_dir",
)
SUMMARY_COLUMNS = CSV_COLUMNS[5:12]


@dataclass
class SweepResult:
    """What a finished sweep wrote; ``trials`` are its rows, one per (cell, method, seed)
    in grid order (a batched trial fills one row per seed)."""

    out: Path
    trials: list[dict[str, Any]]
    table: str  # the Markdown of results.md
    curves: Path | None  # None when no trial succeeded or the plot failed
    notes: list[str] = field(default_factory=list)  # e.g. why curves.png is missing

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["status"] != "ok"]

    @property
    def all_ok(self) -> bool:
        return not self.failed

    def report(self, out: Callable[[str], Any], err: Callable[[str], Any]) -> int:
        """Show the result as ``alm sweep`` ends (the table, each note as a ``warning:``
        line, the folder, the failures' count); the exit status: 0, or 1 when a trial failed."""
        out("")
        out(self.table.rstrip("\n"))
        for note in self.notes:
            err(f"warning: {note}")
        out(f"sweep folder: {self.out}")
        if self.all_ok:
            return 0
        err(f"{len(self.failed)} of {len(self.trials)} trials failed")
        return 1


# ------------------------------------------------------------------------------ record
def save_record(out: Path, record: dict[str, Any]) -> None:
    """``OUT/sweep.json``, through a temporary file and a rename (never half written)."""
    write_text_atomic(out / SWEEP_FILE, json.dumps(record, indent=2) + "\n")


def load_record(out: Path) -> dict[str, Any]:
    path = out / SWEEP_FILE
    if not path.is_file():
        raise SweepError(f"'{out}' holds no sweep (no {SWEEP_FILE}) to resume")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SweepError(f"cannot read '{path}': {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("trials"), list):
        raise SweepError(f"'{path}' is not a sweep record")
    for name, (valid, what) in RECORD_FIELDS.items():
        if name in record and not valid(record[name]):
            raise SweepError(f"'{path}': field '{name}' must be {what}, got {record[name]!r}")
    return record


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


RECORD_FIELDS = {  # sweep.json's fields a resume reads: (valid, what it must be)
    "mode": (lambda v: v in ("online", "offline"), "online or offline"),
    "name": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "config": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "cells": (lambda v: _strings(v) and bool(v), "a non-empty list of strings"),
    "methods": (lambda v: _strings(v) and bool(v), "a non-empty list of strings"),
    "seeds": (
        lambda v: isinstance(v, list) and bool(v) and all(_is_int(s) for s in v),
        "a non-empty list of integers",
    ),
    "overrides": (
        lambda v: isinstance(v, list) and all(isinstance(o, str) for o in v),
        "a list of strings",
    ),
    "python": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "address": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "cpus_per_trial": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "gpus_per_trial": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "seeds_per_trial": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1 or null"),
}


# ------------------------------------------------------------------------------ tables
def score(summary: dict[str, Any]) -> float | None:
    """A trial's figure: its final normalised score, else its final return."""
    value = summary.get("normalized_score_mean")
    return summary.get("eval_return_mean") if value is None else value


def trial_score(trial: dict[str, Any], mode: str) -> float | None:
    """An ok trial's score: offline, the protocol's (``stats.final_score``: the mean of the
    last evaluations' normalised scores, else returns, in the seed's eval.jsonl); online, or
    a run dir without eval.jsonl, the final evaluation's (``score``)."""
    if trial["status"] != "ok":
        return None
    path = Path(trial["run_dir"]) / "eval.jsonl"
    if not run_mode(mode).online and path.is_file():
        rows = read_jsonl(path)
        key = (
            "normalized_score_mean"
            if rows and rows[-1].get("normalized_score_mean") is not None
            else "return_mean"
        )
        values = [row[key] for row in rows if row.get(key) is not None]
        if values:
            return final_score(values)
    value = score(trial["summary"])
    return None if value is None else float(value)


def score_cell(values: list[float], total: int, intervals: bool = False) -> str:
    """``mean ± std`` (population std) of ``values``, after ``IQM [95% CI]`` with
    ``intervals``; with ``(k/n seeds)`` when some of the ``total`` trials gave none;
    ``failed`` when none did."""
    if not values:
        return "failed"
    cell = f"{np.mean(values):.1f} ± {np.std(values):.1f}"
    if intervals:
        cell = f"{summarise_seeds(values).iqm.describe()}; {cell}"
    return cell if len(values) == total else f"{cell} ({len(values)}/{total} seeds)"


def improvement_line(
    record: dict[str, Any], scores: list[float | None], first: str = "alm", second: str = "td3+bc"
) -> str:
    """Per dataset of an offline sweep with both methods: P(first beats second) [95% CI];
    ``scores[i]`` is trial row i's ``trial_score``."""
    parts = []
    rows = list(zip(record["trials"], scores, strict=True))
    for cell, slug in zip(record["cells"], cell_slugs("offline", record["cells"]), strict=True):
        scores_of = [
            [v for t, v in rows if t["dataset"] == cell and t["method"] == method and v is not None]
            for method in (first, second)
        ]
        if all(scores_of):
            parts.append(f"{slug} {probability_of_improvement(*scores_of).describe(2)}")
    return f"P({first} > {second}) [95% CI]: " + "; ".join(parts) if parts else ""


def method_label(method: str, mode: str, name: str) -> str:
    if method in ONLINE_BASELINES:
        return f"{method.upper()} (d3rlpy)"
    if run_mode(mode).online:
        return f"ALM (this run: {name})"
    return f"{method.upper()} (d3rlpy)" if method in BASELINE_METHODS else "offline ALM"


def results_table(
    record: dict[str, Any], paper: dict[str, tuple[float, float]] | None = None
) -> str:
    """Markdown: a row per method, a column per env or dataset of ``mean ± std`` over seeds
    (population std) of the final score (``score``; a trial without one counts as failed),
    then the method's mean updates/s and wall seconds per run. ``paper`` (env ->
    (mean, std)) adds the paper's Table 1 row when it reports one of the envs."""
    mode, cells, methods = record["mode"], record["cells"], record["methods"]
    key, online = run_mode(mode).cell_key, run_mode(mode).online
    trials = record["trials"]
    scores = {id(t): trial_score(t, mode) for t in trials}  # each run's eval.jsonl read once
    lines = [
        "| Method | " + " | ".join(cell_slugs(mode, cells)) + " | updates/s | wall s per run |",
        "|---|" + "---|" * (len(cells) + 2),
    ]
    for method in methods:
        cell_texts = []
        for cell in cells:
            rows = [t for t in trials if t[key] == cell and t["method"] == method]
            values = [v for t in rows if (v := scores[id(t)]) is not None]
            cell_texts.append(score_cell(values, len(rows), intervals=not online))
        ok = [t["summary"] for t in trials if t["method"] == method and t["status"] == "ok"]
        speed = [s["updates_per_sec"] for s in ok if s.get("updates_per_sec")]
        wall = [s["wall_seconds"] for s in ok if s.get("wall_seconds") is not None]
        timing = " | ".join(f"{np.mean(v):.0f}" if v else "–" for v in (speed, wall))
        label = method_label(method, mode, record["name"])
        lines.append(f"| {label} | " + " | ".join(cell_texts) + f" | {timing} |")
    if paper and any(cell in paper for cell in cells):
        texts = [f"{paper[c][0]:.1f} ± {paper[c][1]:.1f}" if c in paper else "–" for c in cells]
        lines.append("| ALM(3), paper Table 1 (200k steps) | " + " | ".join(texts) + " | – | – |")
    if not online:
        lines += [
            "",
            f"Offline scores: the mean of each run's last {LAST_EVALS} evaluations; "
            "IQM [95% CI] (rliable, stratified bootstrap); mean ± std over seeds.",
        ]
        if improvement := improvement_line(record, [scores[id(t)] for t in trials]):
            lines.append(improvement)
    return "\n".join(lines) + "\n"


def results_csv(trials: Sequence[dict[str, Any]]) -> str:
    """One CSV row per (cell, method, seed) (``CSV_COLUMNS``; ``run_dir`` is the seed's,
    ``trial_dir`` its trial's); empty cells where a row has no value."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for t in trials:
        summary = t.get("summary") or {}
        row = {key: summary.get(key) for key in SUMMARY_COLUMNS}
        row.update({key: t.get(key) for key in ("dataset", "method", "seed", "status")})
        row.update(env=t.get("env") or summary.get("env"), run_dir=t["run_dir"])
        row["trial_dir"] = t.get("trial_dir", t["run_dir"])
        row["error"] = t.get("error")
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def describe(row: dict[str, Any], progress: str, mode: str) -> str:
    """One line for a finished trial of a ``mode`` sweep, its score the tables' own
    (``trial_score``: offline, the mean of the last evaluations)."""
    cell = row.get("dataset") or row["env"]
    method = f" {row['method']}" if row.get("dataset") else ""
    where = f"{progress} {cell}{method} s{row['seed']}".strip()
    if row["status"] != "ok":
        return f"{where}: failed: {row['error']}"
    s = row["summary"]
    value = trial_score(row, mode)
    kind = "score" if s.get("normalized_score_mean") is not None else "eval return"
    result = "no evaluation" if value is None else f"{kind} {value:.1f}"
    if value is not None and kind == "eval return" and s.get("eval_return_std") is not None:
        result += f" ± {s['eval_return_std']:.1f}"
    steps = f"{s['env_steps']} env steps" if not row.get("dataset") else f"{s['updates']} updates"
    return f"{where}: ok, {result} ({steps}, {s['wall_seconds']:.0f} s)"


def write_results(out: Path, record: dict[str, Any]) -> SweepResult:
    """Write ``results.md``, ``results.csv`` and the curves of the trials that succeeded
    (``curves.png``; a plot that fails is a note, never a lost table)."""
    from alm_offline.tools.plotting import plot_learning_curves
    from alm_offline.tools.published import PAPER_TABLE1

    trials = record["trials"]
    table = results_table(record, PAPER_TABLE1)
    write_text_atomic(out / "results.csv", results_csv(trials))
    write_text_atomic(out / "results.md", table)
    notes: list[str] = []
    curves = None
    ok_dirs = [Path(t["run_dir"]) for t in trials if t["status"] == "ok"]
    if ok_dirs:
        try:
            curves = plot_learning_curves(ok_dirs, out / "curves.png")
        except Exception as exc:  # a plot must not lose the table
            lines = str(exc).strip().splitlines()
            notes.append(f"curves.png not drawn: {type(exc).__name__}: {lines[0] if lines else ''}")
    else:
        notes.append("curves.png not drawn: no trial succeeded")
    return SweepResult(out=out, trials=trials, table=table, curves=curves, notes=notes)
