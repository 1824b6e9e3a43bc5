"""A grid (dataset x method x seed) of offline runs as Ray tasks: offline ALM and d3rlpy's
baselines side by side, summarised like D4RL's tables.

Each trial is a real ``python -m cli train-offline`` or ``python -m cli baseline ALGO``
subprocess, so the trials may run in another environment than the sweep's driver: d3rlpy
pins gymnasium 1.0, and ``--python`` names the interpreter of a venv that has it (the
driver only needs Ray). The sweep folder gets, as the online sweep's does:

* ``sweep.json``: the grid, the overrides and every trial's status, summary or error;
* ``results.csv``: one row per trial;
* ``results.md``: one row per method, one column per dataset, of ``mean ± std`` over seeds
  of the final normalised score (the return where the dataset has no reference scores),
  with each method's updates/s and wall time per run;
* ``curves.png``: the evaluation curves of the trials that succeeded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alm_offline.config import METHODS, ConfigError, load_config
from alm_offline.datasets.convert import load_dataset
from alm_offline.tools.sweep import (
    SweepError,
    SweepResult,
    csv_text,
    default_out,
    failed_row,
    import_ray,
    prepare_out_and_cluster,
    run_grid,
    score_cell,
    trial_threads,
    write_results,
)
from alm_offline.training.rundir import read_summary

OFFLINE_CSV_COLUMNS = (
    "dataset",
    "method",
    "seed",
    "status",
    "normalized_score_mean",
    "eval_return_mean",
    "updates",
    "updates_per_sec",
    "wall_seconds",
    "run_dir",
    "error",
)


def parse_methods(text: str) -> list[str]:
    """``--methods`` as comma-separated text -> method names (alm, bc, td3+bc, iql, cql)."""
    methods = [part.strip() for part in text.split(",")]
    unknown = [m for m in methods if m not in METHODS]
    if not text.strip() or unknown:
        raise SweepError(f"--methods must be a comma-separated list of {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise SweepError(f"method listed twice in '{text}'")
    return methods


def dataset_slug(dataset: str) -> str:
    """A dataset id or path as one folder name: ``alm-suite/hopper/medium-v0`` ->
    ``alm-suite_hopper_medium-v0``."""
    return Path(dataset).name if Path(dataset).suffix else dataset.strip("/").replace("/", "_")


def offline_trials(
    datasets: Sequence[str], methods: Sequence[str], seeds: Sequence[int], out: Path
) -> list[dict[str, Any]]:
    """Every trial in grid order (dataset, then method, then seed)."""
    return [
        {
            "dataset": dataset,
            "method": method,
            "seed": seed,
            "run_dir": str(out / dataset_slug(dataset) / method.replace("+", "") / f"s{seed}"),
        }
        for dataset in datasets
        for method in methods
        for seed in seeds
    ]


def trial_command(
    trial: dict[str, Any], config: str | None, overrides: Sequence[str], python: str, threads: int
) -> list[str]:
    """The command line that trains ``trial``."""
    method = trial["method"]
    head = ["train-offline"] if method == "alm" else ["baseline", method]
    return [
        python,
        "-m",
        "cli",
        *head,
        "--dataset",
        trial["dataset"],
        "--quiet",
        "--overwrite",
        *(["--config", config] if config else []),
        *overrides,
        f"seed={trial['seed']}",
        f"threads={threads}",
        f"run_dir={trial['run_dir']}",
    ]


def run_offline_trial(trial: dict[str, Any], command: list[str]) -> dict[str, Any]:
    """Run one trial's command (inside a Ray worker); never raises, failures become a row."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # idle OpenMP threads yield the core
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    except OSError as exc:
        return {**trial, "status": "failed", "summary": None, "error": f"OSError: {exc}"}
    summary = read_summary(Path(trial["run_dir"]))
    if done.returncode != 0 or not summary:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return {**trial, "status": "failed", "summary": None, "error": lines[-1]}
    return {**trial, "status": "ok", "summary": summary, "error": None}


def _score(summary: dict[str, Any]) -> float | None:
    value = summary.get("normalized_score_mean")
    return summary.get("eval_return_mean") if value is None else value


def offline_results_table(
    trials: Sequence[dict[str, Any]], datasets: Sequence[str], methods: Sequence[str]
) -> str:
    """Markdown: a row per method, a column per dataset of ``mean ± std`` (population std)
    over seeds of the final normalised score (return without reference scores), then the
    method's mean updates/s and wall seconds per run."""
    header = [dataset_slug(d) for d in datasets]
    lines = [
        "| Method | " + " | ".join(header) + " | updates/s | wall s per run |",
        "|---|" + "---|" * (len(datasets) + 2),
    ]
    for method in methods:
        cells = []
        for dataset in datasets:
            rows = [t for t in trials if t["dataset"] == dataset and t["method"] == method]
            values = [
                float(_score(t["summary"]))
                for t in rows
                if t["status"] == "ok" and _score(t["summary"]) is not None
            ]
            cells.append(score_cell(values, len(rows)))
        ok = [t["summary"] for t in trials if t["method"] == method and t["status"] == "ok"]
        speed = [s["updates_per_sec"] for s in ok if s.get("updates_per_sec")]
        wall = [s["wall_seconds"] for s in ok]
        name = "offline ALM" if method == "alm" else f"{method.upper()} (d3rlpy)"
        timing = f"{np.mean(speed):.0f} | {np.mean(wall):.0f}" if speed else "– | –"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {timing} |")
    return "\n".join(lines) + "\n"


def offline_results_csv(trials: Sequence[dict[str, Any]]) -> str:
    """One CSV row per trial (``OFFLINE_CSV_COLUMNS``)."""
    rows = []
    for t in trials:
        summary = t.get("summary") or {}
        row = {key: summary.get(key) for key in OFFLINE_CSV_COLUMNS[4:9]}
        row.update(dataset=t["dataset"], method=t["method"], seed=t["seed"], status=t["status"])
        rows.append({**row, "run_dir": t["run_dir"], "error": t.get("error")})
    return csv_text(rows, OFFLINE_CSV_COLUMNS)


def _check_trials(
    config: str | None, overrides: Sequence[str], datasets: Sequence[str], methods: Sequence[str]
) -> None:
    """Each dataset loads and each method's config validates, before Ray starts."""
    for dataset in datasets:
        load_dataset(dataset)
    for method in methods:
        try:
            load_config(config or "offline", (*overrides, f"method={method}"))
        except ConfigError as exc:
            raise ConfigError(f"{exc} (method {method})") from None


def run_offline_sweep(
    config: str | None,
    datasets: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
    *,
    python: str | None = None,
    address: str | None = None,
    gpus_per_trial: float = 0.0,
    cpus_per_trial: float = 1.0,
    out: Path | None = None,
    name: str | None = None,
    overwrite: bool = False,
    report: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every (dataset, method, seed) trial as a Ray task and write the sweep folder."""
    say = report or (lambda line: None)
    if not datasets or not seeds:
        raise SweepError("give at least one dataset (--datasets) and one seed (--seeds)")
    for label, items in (("dataset", datasets), ("seed", seeds)):
        if len(set(items)) != len(items):
            raise SweepError(f"{label} listed twice")
    python = python or sys.executable
    if not Path(python).is_file():
        raise SweepError(f"--python '{python}' is not a file")
    python = os.path.abspath(python)  # trials may start elsewhere; a venv's symlink is kept
    _check_trials(config, overrides, datasets, methods)
    ray = import_ray()
    name = name or (Path(config).stem if config else "offline")
    out = (out if out is not None else default_out(name)).absolute()
    prepare_out_and_cluster(out, overwrite, address, cpus_per_trial, gpus_per_trial)
    trials = offline_trials(datasets, methods, seeds, out)
    threads = trial_threads(cpus_per_trial)
    commands = [trial_command(t, config, overrides, python, threads) for t in trials]
    record: dict[str, Any] = {
        "name": name,
        "mode": "offline",
        "config": config,
        "datasets": list(datasets),
        "methods": list(methods),
        "seeds": list(seeds),
        "overrides": list(overrides),
        "python": python,
        "address": address,
        "cpus_per_trial": cpus_per_trial,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "status": "running",
        "trials": [{**t, "status": "pending"} for t in trials],
    }

    say(f"sweep {name}: {len(trials)} offline trials on Ray ({address or 'local'}), out {out}")

    def failed(i: int, exc: BaseException) -> dict[str, Any]:
        row = failed_row(trials[i]["dataset"], trials[i]["seed"], trials[i]["run_dir"], exc)
        return {**trials[i], **{k: row[k] for k in ("status", "summary", "error")}}

    run_grid(
        ray,
        address,
        out,
        record,
        run_offline_trial,
        list(zip(trials, commands, strict=True)),
        failed,
        lambda row: say(_describe(row)),
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
    )
    return _write_results(out, record)


def _describe(row: dict[str, Any]) -> str:
    where = f"{row.get('progress', '')} {row['dataset']} {row['method']} s{row['seed']}".strip()
    if row["status"] != "ok":
        return f"{where}: failed: {row['error']}"
    s = row["summary"]
    score = _score(s)
    result = "no evaluation" if score is None else f"score {score:.1f}"
    return f"{where}: ok, {result} ({s['updates']} updates, {s['wall_seconds']:.0f} s)"


def _write_results(out: Path, record: dict[str, Any]) -> SweepResult:
    trials = record["trials"]
    table = offline_results_table(trials, record["datasets"], record["methods"])
    return write_results(out, trials, table, offline_results_csv(trials))
