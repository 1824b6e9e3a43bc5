"""Running a grid so that it lands seed by seed and cell by cell (``alm grid run``).

``run_grid`` trains the cells of a grid file (``grid_file``) in order, each as one sweep
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
    failed = [row for row in rows if row.get("status") != "ok"]
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
    echo=print,
) -> list[Path]:
    """Train every cell of ``grid`` without a JSON yet in ``results`` (the grid file's folder
    by default), or those in ``only``, in order; returns the cell files written. The sweeps'
    folders (and so the checkpoints that let an interrupted cell continue) live in ``work``."""
    missing = [name for name in grid.datasets.values() if not (grid.data / name).is_file()]
    # (an online grid has no datasets)
    if missing:
        raise GridError(f"'{grid.data}' lacks {', '.join(missing)} (pass --data FOLDER)")
    unknown = sorted(set(only) - {cell.slug for cell in grid.cells})
    if unknown:
        raise GridError(f"no cell {unknown[0]} in '{grid.path}'")
    results = results or grid.folder
    to_run = [c for c in grid.cells if not only or c.slug in only]
    for cell in to_run:  # every destination checked before the first cell trains
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
    code_root = Path(__file__).resolve().parents[2]  # the checkout the trials run, too
    path_entries = [str(code_root), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path_entries))}
    lander = SeedLander(grid, results, code_root, commit, echo)
    written = []
    for cell in grid.cells:
        if cell.slug in done or (only and cell.slug not in only):
            continue
        entries = read_seed_entries(grid, cell, results)
        missing = [seed for seed in grid.seeds if seed not in entries]
        out = work / cell.slug
        fresh = alm_sweep_line(grid, cell, out, python)
        if missing:
            command = sweep_command(grid, cell, out, python, address, missing)
            resumed = "--resume" in command
            seeds = ",".join(map(str, missing))
            echo(f"{cell.slug}: {f'resuming {out}' if resumed else f'seeds {seeds}: {fresh}'}")
            child = subprocess.Popen(command, env=env)
            while not exited(child, LAND_EVERY_S):  # each seed's file lands as it finishes
                lander.land(cell, out, entries)
            lander.land(cell, out, entries)
            failure = sweep_failures(out) if (out / "sweep.json").is_file() else None
            if child.returncode != 0 or failure or set(missing) - set(entries):
                why = failure or f"its sweep exited {child.returncode}"
                raise GridError(f"cell {cell.slug}: {why} ('{out}')")
        record = cell_record(grid, cell, entries, fresh)
        path = cell_path(results, cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(record, indent=1) + "\n")
        scores = [s["score"] for s in record["seeds"].values()]
        echo(f"{cell.slug}: wrote {path} (scores {', '.join(f'{v:.1f}' for v in scores)})")
        if commit:
            commit_file(path, f"Grid {grid.name}: cell {cell.slug} ({len(scores)} seeds)")
        written.append(path)
    return written


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
