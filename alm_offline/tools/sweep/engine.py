"""The sweep: check everything, join Ray, run the trials that are not finished, keep the
record on disk after every trial, write the results. ``run_sweep`` starts a grid;
``resume_sweep`` continues one from its folder alone. The record's ``trials`` are rows, one
per (cell, method, seed), each naming the run dir of its trial (``trial_dir``): a batched
trial fills several rows."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from alm_offline.runtime.files import check_output_file
from alm_offline.tools.sweep import ray_runner
from alm_offline.tools.sweep.outputs import (
    SWEEP_FILE,
    SweepResult,
    describe,
    load_record,
    save_record,
    write_results,
)
from alm_offline.tools.sweep.spec import (
    SweepError,
    SweepSpec,
    check_spec,
    grid_rows,
    grid_trials,
)
from alm_offline.tools.sweep.trials import (
    FINISHED,
    FRESH,
    RESUMABLE,
    driver_origin,
    finished_rows,
    run_trial,
    trial_command,
    trial_rows,
    trial_state,
)

Report = Callable[[str], None]


def default_out(name: str) -> Path:
    return Path("sweeps") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_sweep(
    spec: SweepSpec,
    out: Path | None = None,
    *,
    overwrite: bool = False,
    report: Report | None = None,
) -> SweepResult:
    """Run every trial of ``spec`` as a Ray task and write the sweep folder ``out``.

    Raises an ``AlmError`` (one line) before Ray starts or anything is written when the
    input cannot work; a trial's failure is a row of the result, not an exception.
    """
    check_spec(spec)
    out = Path(os.path.abspath(out if out is not None else default_out(spec.name)))
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out '{out}' exists and is not a directory")
    if (out / SWEEP_FILE).exists() and not overwrite:
        raise SweepError(
            f"'{out}' already holds a sweep; use --resume to continue it or --overwrite "
            "to replace it"
        )
    check_output_file(out / SWEEP_FILE, "--out")  # before Ray starts
    trials = grid_trials(spec, out)
    rows = grid_rows(trials)
    record = {**asdict(spec), "started": _now(), "status": "running", "trials": rows}
    states = {i: FRESH for i in range(len(trials))}
    return _run(spec, out, record, trials, states, overwrite, report or (lambda line: None))


def resume_sweep(
    out: Path,
    *,
    address: str | None = None,
    python: str | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    report: Report | None = None,
) -> SweepResult:
    """Continue the sweep in ``out`` from ``out/sweep.json`` and its run dirs: a finished
    trial (``summary.json``) is kept as it is, an interrupted one continues from its last
    checkpoint, any other starts again. The options given replace the record's."""
    out = Path(os.path.abspath(out))  # no "..": the same folder by any path is the same
    record = load_record(out)
    given = {"address": address, "python": python, "cpus_per_trial": cpus_per_trial,
             "gpus_per_trial": gpus_per_trial}  # fmt: skip
    spec = replace(SweepSpec.from_record(record), **{k: v for k, v in given.items() if v})
    check_spec(spec)
    trials = grid_trials(spec, out)
    if [_dirs(row) for row in grid_rows(trials)] != [_dirs(row) for row in record["trials"]]:
        raise SweepError(f"'{out / SWEEP_FILE}' does not list its grid's trials")
    check_output_file(out / SWEEP_FILE, "--out")  # before Ray starts
    states, rows = resume_states(trials)
    for index, state in states.items():  # a trial that starts again replaces its run dir
        if state == FRESH:
            _check_nothing_finished(Path(trials[index]["run_dir"]), out)
    record.update(asdict(spec), trials=rows, status="running", resumed=_now())
    return _run(spec, out, record, trials, states, True, report or (lambda line: None))


def _check_nothing_finished(run_dir: Path, out: Path) -> None:
    """``SweepError`` when the run dir a resumed trial would start afresh in (replacing it)
    holds a finished run or the sweep's own record: a record that does not match what is on
    disk never costs a finished run."""
    if (run_dir / SWEEP_FILE).exists() or run_dir.resolve() == out.resolve():
        raise SweepError(f"'{out / SWEEP_FILE}' names a trial in the sweep folder itself")
    finished = sorted(run_dir.rglob("summary.json")) if run_dir.is_dir() else []
    if finished:
        raise SweepError(
            f"'{out / SWEEP_FILE}' does not match what is on disk: its trial '{run_dir}' would "
            f"start again over the finished run '{finished[0].parent}'; a resume never "
            "deletes a finished run"
        )


def _dirs(row: Any) -> tuple[Any, Any]:
    """A record row's run dir and its trial's, normalised (a record from before batched
    trials has no ``trial_dir``: each trial was its row's run dir)."""
    if not isinstance(row, dict):
        return None, None
    dirs = row.get("run_dir"), row.get("trial_dir", row.get("run_dir"))
    # a record written through another path to the same folder ("wt/../sweeps") lists it
    return tuple(os.path.normpath(d) if isinstance(d, str) else d for d in dirs)


def resume_states(trials: list[dict[str, Any]]) -> tuple[dict[int, str], list[dict[str, Any]]]:
    """What resuming does with each trial, from its run dir alone: the states of those to
    run (index -> ``fresh`` or ``resumable``) and the rows to start from (a finished
    trial's from its seeds' ``summary.json``, the others pending)."""
    states: dict[int, str] = {}
    rows: list[dict[str, Any]] = []
    for i, trial in enumerate(trials):
        state = trial_state(trial["run_dir"], trial["seeds"])
        if state == FINISHED:
            rows += finished_rows(trial)
        else:
            states[i] = state
            rows += trial_rows(trial)
    return states, rows


def _run(
    spec: SweepSpec,
    out: Path,
    record: dict[str, Any],
    trials: list[dict[str, Any]],
    states: dict[int, str],
    overwrite: bool,
    say: Report,
) -> SweepResult:
    """Run the ``trials`` that ``states`` names (index -> fresh or resumable), put each
    one's rows into ``record`` as it finishes, and write the results."""
    ray = ray_runner.import_ray()
    todo = sorted(states)
    where = spec.address or "local"
    ray_runner.connect(ray, spec.address)
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SweepError(f"cannot create --out '{out}': {exc.strerror}") from None
        save_record(out, record)
        resumed = sum(states[i] == RESUMABLE for i in todo)
        say(
            f"sweep {spec.name}: {len(todo)} of {len(trials)} {spec.mode} trials to "
            f"run ({resumed} resumed) on Ray ({where}), out {out}"
        )
        position = {row["run_dir"]: k for k, row in enumerate(record["trials"])}
        origin = driver_origin()
        arguments = [
            (
                trials[i],
                trial_command(
                    trials[i],
                    mode=spec.mode,
                    state=states[i],
                    python=spec.python,
                    config=spec.config,
                    overrides=spec.overrides,
                    threads=spec.threads,
                    overwrite=overwrite,
                ),
                origin,
            )
            for i in todo
        ]
        done = [0]

        def failed(j: int, exc: BaseException) -> list[dict[str, Any]]:
            return trial_rows(arguments[j][0], "failed", ray_runner.first_line(exc))

        def finished(j: int, rows: list[dict[str, Any]]) -> None:
            done[0] += 1
            for row in rows:
                record["trials"][position[row["run_dir"]]] = row
                say(describe(row, f"[{done[0]}/{len(todo)}]", record["mode"]))
            save_record(out, record)

        try:
            ray_runner.run_tasks(
                ray,
                run_trial,
                arguments,
                failed,
                finished,
                cpus_per_trial=spec.cpus_per_trial,
                gpus_per_trial=spec.gpus_per_trial,
            )
        except KeyboardInterrupt:
            record["status"] = "interrupted"
            save_record(out, record)
            say(f"interrupted; continue with: alm sweep --resume {out}")
            raise
    finally:
        ray.shutdown()
    record.update(status="finished", finished=_now())
    save_record(out, record)
    return write_results(out, record)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
