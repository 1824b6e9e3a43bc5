"""Running a grid so that it lands seed by seed and cell by cell (``alm grid run``).

``run_grid`` trains the cells of a grid file (``grid_file``) in order, up to
``cells_at_once`` at a time (on a shared Ray cluster, so that a one-trial cell, such as an
online ALM cell with its seeds batched, does not leave a slot idle), each as one sweep
subprocess (``python -m alm_offline.tools.sweep``: a fresh one, or a resume of the cell's
sweep folder when an earlier run was interrupted, so a trial continues from its last
checkpoint, run by the interpreter a fresh start would give it). Each seed, as soon as its
trial finishes, writes its seed file (``grid_records``) and, with ``commit``, commits it at
once: a grid stopped mid-cell (a session's end takes the sweep folders with it) trains only
the seeds without a file when it runs again. A cell whose seeds are all there writes its
cell file and commits it; a cell whose file exists is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alm_offline.runtime.files import check_output_file, sha256_of, write_text_atomic
from alm_offline.tools.grid_file import Cell, Grid, GridError
from alm_offline.tools.grid_records import (
    cell_path,
    cell_record,
    read_cells,
    read_seed_entries,
    seed_entry,
    seed_path,
)
from alm_offline.tools.sweep import SweepSpec

COMMIT_TRIES = 5
LAND_EVERY_S = 15.0  # how often a running cell's finished seeds are looked for
POLL_S = 0.5  # with several cells at once: how often each sweep is looked at for its end


def cell_spec(
    grid: Grid, cell: Cell, python: str | None, seeds: Sequence[int] | None = None
) -> SweepSpec:
    """The sweep that trains ``cell``: its dataset, method and config, ``seeds`` (the grid's
    by default; ALM's in chunks of ``seeds_per_trial``), and the baselines' interpreter."""
    return SweepSpec(
        mode=grid.mode,
        name=f"{grid.name}-{cell.slug}",
        config=cell.config or grid.config,
        cells=[cell.dataset if grid.online else str(grid.file(cell.dataset))],
        methods=[cell.method],
        seeds=list(grid.seeds if seeds is None else seeds),
        overrides=[*([] if grid.online else [f"env={grid.env}"]), *grid.overrides, *cell.overrides],
        python=str(Path(python if python and cell.method != "alm" else sys.executable).absolute()),
        seeds_per_trial=grid.seeds_per_trial if cell.method == "alm" else None,
    )


def sweep_command(
    grid: Grid,
    cell: Cell,
    out: Path,
    python: str | None,
    address: str | None = None,
    seeds: Sequence[int] | None = None,
) -> list[str]:
    """The library's sweep entry that trains ``cell``'s ``seeds`` (all by default) into
    ``out`` (``--resume`` when it began, its trials run by the interpreter a fresh start
    would give them: the baselines' ``python`` for a baseline's, this one for ALM's), on the
    Ray cluster at ``address`` or a local Ray of its own."""
    head = [sys.executable, "-m", "alm_offline.tools.sweep"]
    head += ["--address", address] if address else []
    spec = asdict(cell_spec(grid, cell, python, seeds))
    if (out / "sweep.json").is_file():
        return [*head, "--resume", str(out), "--python", spec["python"]]
    return [*head, "--spec", json.dumps(spec), "--out", str(out)]


def alm_sweep_line(grid: Grid, cell: Cell, out: Path, python: str | None) -> str:
    """The ``alm sweep`` command a user would type for a fresh run of ``cell`` into ``out``
    (a cell file's record of how it was made)."""
    spec = cell_spec(grid, cell, python)
    cells_flag = "--envs" if grid.online else "--datasets"
    words = ["alm", "sweep", cells_flag, *spec.cells, "--methods", *spec.methods, "--seeds",
             ",".join(map(str, spec.seeds))]  # fmt: skip
    words += ["--seeds-per-trial", str(spec.seeds_per_trial)] if spec.seeds_per_trial else []
    words += ["--config", spec.config, "--out", str(out), "--name", spec.name]
    words += ["--python", python] if python and cell.method != "alm" else []
    return " ".join([*words, *spec.overrides])


def finished_run_dirs(out: Path) -> dict[int, Path]:
    """seed -> run dir of every finished (ok) seed of the cell sweep in ``out`` so far."""
    path = out / "sweep.json"
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["trials"]
    except (OSError, ValueError, KeyError):  # being replaced: the next look reads it
        return {}
    return {int(row["seed"]): Path(row["run_dir"]) for row in rows if row.get("status") == "ok"}


def sweep_failures(out: Path) -> str | None:
    """The first failed seed's error of the finished cell sweep in ``out`` (None: none)."""
    rows = json.loads((out / "sweep.json").read_text(encoding="utf-8"))["trials"]
    failed = [row for row in rows if row.get("status") == "failed"]  # not pending: never ran
    return f"{len(failed)} failed seed(s): {failed[0].get('error')}" if failed else None


def commit_file(path: Path, message: str) -> None:
    """``git add`` + ``git commit`` of ``path`` alone (other staged changes stay staged),
    retried while another git process holds the index."""
    repo = path.parent
    for attempt in range(COMMIT_TRIES):
        add = subprocess.run(["git", "-C", str(repo), "add", "--", path.name], capture_output=True)
        done = subprocess.run(
            ["git", "-C", str(repo), "commit", "-q", "-m", message, "--", path.name],
            capture_output=True,
            text=True,
        )
        if add.returncode == 0 and done.returncode == 0:
            return
        time.sleep(2 + 3 * attempt)
    raise GridError(f"could not commit '{path}': {done.stderr.strip().splitlines()[-1:]}")


def run_grid(
    grid: Grid,
    work: Path,
    *,
    results: Path | None = None,
    python: str | None = None,
    only: Sequence[str] = (),
    commit: bool = False,
    address: str | None = None,
    cells_at_once: int = 1,
    echo=print,
) -> list[Path]:
    """Train every cell of ``grid`` without a JSON yet in ``results`` (the grid file's folder
    by default), or those in ``only``, in order, up to ``cells_at_once`` cells' sweeps at a
    time; returns the cell files written. The sweeps' folders (and so the checkpoints that
    let an interrupted cell continue) live in ``work``. A failed cell stops the grid once
    the cells running beside it have finished (and landed)."""
    if cells_at_once < 1:
        raise GridError(f"cells at once must be 1 or more, not {cells_at_once}")
    results = results or grid.folder
    done = _check_before_running(grid, work, results, only)
    code_root = Path(__file__).resolve().parents[2]  # the checkout the trials run, too
    path_entries = [str(code_root), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path_entries))}
    lander = SeedLander(grid, results, code_root, commit, echo)
    pending = [c for c in grid.cells if c.slug not in done and (not only or c.slug in only)]
    running: list[CellSweep] = []
    written: list[Path] = []
    failures: list[str] = []
    while pending or running:
        while pending and len(running) < cells_at_once and not failures:
            cell = pending.pop(0)
            sweep = CellSweep.start(grid, cell, work, python, address, results, env, echo)
            if sweep.child is None:  # every seed had landed: only its cell file was missing
                written.append(_write_cell(grid, sweep, results, commit, echo))
            else:
                running.append(sweep)
        if not running:
            break
        ended = _wait_for_one(running, lander)
        running.remove(ended)
        failure = ended.failure()
        if failure:
            failures.append(failure)
        else:
            written.append(_write_cell(grid, ended, results, commit, echo))
    if failures:
        raise GridError(failures[0])
    return written


def _check_before_running(
    grid: Grid, work: Path, results: Path, only: Sequence[str]
) -> dict[str, dict]:
    """Everything a run needs, checked before the first cell trains: the data files, the
    ``only`` names, every destination writable, the finished cells' data digests; returns
    the finished cells' records."""
    missing = [name for name in grid.datasets.values() if not (grid.data / name).is_file()]
    # (an online grid has no datasets)
    if missing:
        raise GridError(f"'{grid.data}' lacks {', '.join(missing)} (pass --data FOLDER)")
    unknown = sorted(set(only) - {cell.slug for cell in grid.cells})
    if unknown:
        raise GridError(f"no cell {unknown[0]} in '{grid.path}'")
    for cell in [c for c in grid.cells if not only or c.slug in only]:
        check_output_file(cell_path(results, cell), "cell file")
        check_output_file(work / cell.slug / "sweep.json", "sweep folder")
    done = read_cells(grid, results)
    for slug, record in done.items():
        name = record["data_file"]
        if name is not None and record.get("data_sha256", {}).get(name) != sha256_of(
            grid.data / name
        ):
            raise GridError(
                f"'{cell_path(results, next(c for c in grid.cells if c.slug == slug))}' was "
                f"trained on another {name} (sha256): move it away to train the cell again"
            )
    return done


@dataclass
class CellSweep:
    """One cell being trained: its sweep subprocess (None when every seed had landed), the
    folder it trains in, the seeds landed so far and the ``alm sweep`` line of a fresh run."""

    cell: Cell
    out: Path
    entries: dict[int, dict]
    missing: list[int]
    fresh: str
    child: subprocess.Popen | None

    @classmethod
    def start(
        cls,
        grid: Grid,
        cell: Cell,
        work: Path,
        python: str | None,
        address: str | None,
        results: Path,
        env: dict[str, str],
        echo: Any,
    ) -> CellSweep:
        """The sweep of ``cell``'s seeds without a file, started (a resume when it began)."""
        entries = read_seed_entries(grid, cell, results)
        missing = [seed for seed in grid.seeds if seed not in entries]
        out = work / cell.slug
        fresh = alm_sweep_line(grid, cell, out, python)
        child = None
        if missing:
            command = sweep_command(grid, cell, out, python, address, missing)
            seeds = ",".join(map(str, missing))
            resumed = "--resume" in command
            echo(f"{cell.slug}: {f'resuming {out}' if resumed else f'seeds {seeds}: {fresh}'}")
            child = subprocess.Popen(command, env=env)
        return cls(cell, out, entries, missing, fresh, child)

    def failure(self) -> str | None:
        """Why the ended sweep did not give every missing seed (None: it did)."""
        assert self.child is not None
        failure = sweep_failures(self.out) if (self.out / "sweep.json").is_file() else None
        unlanded = sorted(set(self.missing) - set(self.entries))
        if self.child.returncode == 0 and not failure and not unlanded:
            return None
        code = self.child.returncode
        why = failure or (f"its sweep exited {code}" if code else f"seeds {unlanded} did not land")
        return f"cell {self.cell.slug}: {why} ('{self.out}')"


def _wait_for_one(running: list[CellSweep], lander: SeedLander) -> CellSweep:
    """Wait until one of the ``running`` sweeps ends, landing every running cell's finished
    seeds every ``LAND_EVERY_S`` meanwhile (and the ended one's at its end); returns it."""
    while True:
        first = running[0]
        if len(running) == 1:
            ended = first if exited(first.child, LAND_EVERY_S) else None
        else:  # several: look at each often, so that a slot freed is filled soon
            deadline = time.monotonic() + LAND_EVERY_S
            ended = None
            while ended is None and time.monotonic() < deadline:
                ended = next((r for r in running if r.child.poll() is not None), None)
                if ended is None:
                    time.sleep(POLL_S)
        for sweep in running:
            lander.land(sweep.cell, sweep.out, sweep.entries)
        if ended is not None:
            return ended


def _write_cell(grid: Grid, sweep: CellSweep, results: Path, commit: bool, echo: Any) -> Path:
    """The whole cell's file, written (and with ``commit`` committed); returns its path."""
    record = cell_record(grid, sweep.cell, sweep.entries, sweep.fresh)
    path = cell_path(results, sweep.cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    scores = [s["score"] for s in record["seeds"].values()]
    echo(f"{sweep.cell.slug}: wrote {path} (scores {', '.join(f'{v:.1f}' for v in scores)})")
    if commit:
        commit_file(path, f"Grid {grid.name}: cell {sweep.cell.slug} ({len(scores)} seeds)")
    return path


def exited(child: subprocess.Popen, seconds: float) -> bool:
    """Whether ``child`` exits within ``seconds`` (waited for, not slept through: a cell
    that ends goes on to the next at once)."""
    try:
        child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


@dataclass
class SeedLander:
    """Writes (and, with ``commit``, commits) each finished seed's file as its sweep
    finishes it, so that a grid stopped mid-cell keeps every seed it finished."""

    grid: Grid
    results: Path
    code_root: Path
    commit: bool
    echo: Any

    def land(self, cell: Cell, out: Path, entries: dict[int, dict]) -> None:
        """The seeds of ``cell`` finished in ``out`` and not in ``entries`` yet: written,
        committed, added to ``entries``."""
        for seed, run_dir in sorted(finished_run_dirs(out).items()):
            if seed in entries or seed not in self.grid.seeds:
                continue
            entry = seed_entry(self.grid, cell, run_dir, self.code_root)
            path = seed_path(self.results, cell, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(entry, indent=1) + "\n")
            entries[seed] = entry
            self.echo(f"{cell.slug}: seed {seed} landed, score {entry['record']['score']:.1f}")
            if self.commit:
                commit_file(path, f"Grid {self.grid.name}: {cell.slug} seed {seed}")
