"""A results grid that lands cell by cell (``alm grid run|report``).

A grid file (YAML, e.g. ``results/halfcheetah-sac/grid.yaml``) names an env, a folder of
D4RL-layout HDF5 files, a config, seeds, overrides and its cells: one dataset x one method
(or an ablation: the method with overrides of its own). An online grid (``mode: online``,
e.g. ``results/online-cpu/grid.yaml``) has no data: each cell names an env instead of a
dataset and trains ALM or SAC online, scored by its evaluations' raw returns over env steps.
``run_grid`` trains the cells in order, each as one sweep subprocess (``python -m
alm_offline.tools.sweep``: a fresh one, or a resume of the cell's sweep folder when an
earlier run was interrupted, so a trial continues from its last checkpoint). Each seed, as
soon as its trial finishes, writes ``cells/seeds/<cell>/s<seed>.json`` (its evaluations,
score, model KL range, speed, config, data sha256, commit, CPU) and, with ``commit``,
commits it at once: a grid stopped mid-cell (a session's end takes the sweep folders with
it) trains only the seeds without a file when it runs again. A cell whose seeds are all
there writes ``cells/<dataset>--<variant>.json`` beside the grid file (per seed: every
evaluation, the score, the model KL range, updates/s; the config, the commits, each data
file's sha256, the CPU) and commits it. A cell whose JSON exists is skipped. ``grid_report``
rebuilds the table (``results.md``, optionally a README's marked section) and the curves
from those files alone.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alm_offline.config import (
    BASELINE_METHODS,
    MODES,
    OFFLINE,
    ONLINE,
    ONLINE_BASELINES,
    load_config,
)
from alm_offline.errors import AlmError, first_line
from alm_offline.runtime.envs import describe_env
from alm_offline.runtime.files import check_output_file, sha256_of, write_text_atomic
from alm_offline.runtime.machine import cpu_model
from alm_offline.tools.stats import LAST_EVALS, final_score
from alm_offline.tools.sweep import SweepSpec
from alm_offline.training.loggers import read_jsonl

CELLS_FOLDER = "cells"
SEEDS_FOLDER = "seeds"  # cells/seeds/CELL/sSEED.json: each seed, committed as it lands
SCORE_KEY = "normalized_score_mean"
KL_KEY = "model/kl"
COMMIT_TRIES = 5
LAND_EVERY_S = 15.0  # how often a running cell's finished seeds are looked for
OFFLINE_METHODS = ("alm", *BASELINE_METHODS)  # what a cell trains on its dataset
ONLINE_METHODS = ("alm", *ONLINE_BASELINES)  # what a cell of an online grid trains


class GridError(AlmError):
    """A grid file or folder that cannot be run or reported as asked (one-line message)."""


@dataclass(frozen=True)
class Cell:
    """One dataset x one method variant; ``variant`` names it in files and tables."""

    dataset: str  # a key of the grid's ``datasets``; in an online grid, the cell's env id
    method: str  # alm, or one of d3rlpy's baselines
    variant: str  # the method, or an ablation's name
    overrides: tuple[str, ...] = ()
    label: str = ""  # the table's row or column name
    config: str | None = None  # the cell's own config; None: the grid's

    @property
    def slug(self) -> str:
        return f"{self.dataset}--{self.variant}"


@dataclass(frozen=True)
class Grid:
    """A grid file, read and checked."""

    path: Path
    name: str
    env: str
    data: Path  # the folder of the datasets' files
    datasets: dict[str, str]  # name -> file name in ``data``
    config: str
    seeds: tuple[int, ...]
    seeds_per_trial: int | None
    overrides: tuple[str, ...]
    cells: tuple[Cell, ...]
    compare: tuple[str, str] = ("alm", "td3+bc")  # P(first beats second) per dataset
    kl_reference: tuple[float, float] | None = None  # an online run's model KL range
    data_scores: dict[str, float] = field(default_factory=dict)  # each dataset's own score
    mode: str = OFFLINE.name  # online: cells are envs, trained online; no data
    read_at: tuple[int, ...] = ()  # online: the env steps the table reads the curves at

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def online(self) -> bool:
        return self.mode == ONLINE.name

    def cell_env(self, cell: Cell) -> str:
        """The env ``cell`` is evaluated in (online, the env it trains in)."""
        return cell.dataset if self.online else self.env

    def file(self, dataset: str) -> Path:
        return self.data / self.datasets[dataset]


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """The YAML mapping in ``path`` (a grid or summary file), or ``GridError`` in one line."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise GridError(f"cannot read {what} '{path}': {first_line(exc)}") from None
    if not isinstance(raw, dict):
        raise GridError(f"'{path}' is not a {what} (a YAML mapping)")
    return raw


def need_key(raw: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or (isinstance(value, str | list | dict) and not value):
        raise GridError(f"'{path}': '{key}' must be a non-empty {kind.__name__}")
    return value


def load_grid(path: str | Path, data: str | Path | None = None) -> Grid:
    """Read and check the whole grid file ``path`` (``GridError``, or the ``ConfigError`` of
    a cell's config, naming the cell), every cell's method, config and overrides included,
    so that nothing trains before a later cell's mistake is found; ``data`` replaces its data
    folder (a relative one is relative to the current folder, as is the file's own)."""
    path = Path(path)
    raw = read_yaml_mapping(path, "grid file")
    mode = raw.get("mode", OFFLINE.name)
    if mode not in MODES:
        raise GridError(f"'{path}': 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    online = mode == ONLINE.name
    datasets = {} if online else need_key(raw, "datasets", dict, path)
    seeds = need_key(raw, "seeds", list, path)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise GridError(f"'{path}': 'seeds' must be integers, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise GridError(f"'{path}': 'seeds' must be distinct, got {seeds}")
    items = need_key(raw, "cells", list, path)
    cells = [
        (_online_cell if online else _cell)(item, i, datasets, path) for i, item in enumerate(items)
    ]
    slugs = [cell.slug for cell in cells]
    if len(set(slugs)) != len(slugs):
        raise GridError(f"'{path}': two cells share a dataset and variant")
    per_trial = raw.get("seeds_per_trial")
    if per_trial is not None and (not isinstance(per_trial, int) or per_trial < 1):
        raise GridError(f"'{path}': 'seeds_per_trial' must be a positive integer")
    if online:
        data = "."  # no data: each cell's env is its row
    grid = Grid(
        path=path,
        name=need_key(raw, "name", str, path),
        env="" if online else need_key(raw, "env", str, path),
        data=Path(data if data is not None else need_key(raw, "data", str, path)),
        datasets={str(k): str(v) for k, v in datasets.items()},
        config=need_key(raw, "config", str, path),
        seeds=tuple(seeds),
        seeds_per_trial=per_trial,
        overrides=_strings(raw.get("overrides", []), "overrides", path),
        cells=tuple(cells),
        compare=_pair(raw.get("compare", ["alm", "td3+bc"]), "compare", str, path),
        kl_reference=(
            _pair(raw["kl_reference"], "kl_reference", int | float, path)
            if raw.get("kl_reference") is not None
            else None
        ),
        data_scores=_numbers(raw.get("data_scores") or {}, path),
        mode=mode,
        read_at=_steps(raw.get("read_at", []), path),
    )
    for env in dict.fromkeys(grid.cell_env(cell) for cell in grid.cells):
        describe_env(env)
    for cell in grid.cells:
        try:
            planned_steps(grid, cell)
        except AlmError as exc:
            raise GridError(f"'{path}': cell {cell.slug}: {exc}") from None
    return grid


def _cell(
    item: object, index: int, datasets: dict, path: Path, methods: tuple = OFFLINE_METHODS
) -> Cell:
    if not isinstance(item, dict) or item.get("dataset") not in datasets:
        raise GridError(f"'{path}': cell {index + 1} must name a dataset among {list(datasets)}")
    method = item.get("method", "alm")
    if method not in methods:
        raise GridError(f"'{path}': cell {index + 1}'s method {method!r} is none of {methods}")
    return Cell(
        dataset=item["dataset"],
        method=method,
        variant=str(item.get("variant", method)),
        overrides=_strings(item.get("overrides", []), f"cell {index + 1}'s overrides", path),
        label=str(item.get("label", item.get("variant", method))),
        config=None if item.get("config") is None else str(item["config"]),
    )


def _online_cell(item: object, index: int, datasets: dict, path: Path) -> Cell:
    """A cell of an online grid: ``{env: ID, method: alm|sac, ...}`` (``datasets`` unused)."""
    if not isinstance(item, dict) or not isinstance(item.get("env"), str) or not item["env"]:
        raise GridError(f"'{path}': cell {index + 1} of an online grid must name an env")
    row = {**item, "dataset": item["env"]}
    return _cell(row, index, {item["env"]: None}, path, ONLINE_METHODS)


def _steps(value: object, path: Path) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise GridError(f"'{path}': 'read_at' must be a list of env steps, got {value!r}")
    return tuple(value)


def _strings(value: object, what: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GridError(f"'{path}': {what} must be a list of KEY=VALUE strings, got {value!r}")
    return tuple(value)


def _pair(value: object, what: str, kind: Any, path: Path) -> tuple:
    ok = isinstance(value, list) and len(value) == 2
    if not ok or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise GridError(f"'{path}': '{what}' must be a list of two, got {value!r}")
    return tuple(value)


def _numbers(value: object, path: Path) -> dict[str, float]:
    if not isinstance(value, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
    ):
        raise GridError(f"'{path}': 'data_scores' must map datasets to numbers, got {value!r}")
    return {str(k): float(v) for k, v in value.items()}


# ------------------------------------------------------------------------- what a cell holds
def code_commit(root: Path) -> str:
    """The commit of the code in ``root`` (``+dirty`` when tracked files differ from it)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def seed_record(run_dir: Path, online: bool = False) -> dict[str, Any]:
    """One seed's run dir in a cell: its evaluations, score, model KL range and speed.
    Offline a seed is scored by its D4RL-normalised returns at each update count; online
    by its raw returns at each env step, each evaluation with the run's wall seconds."""
    evals = read_jsonl(run_dir / "eval.jsonl")
    key = "return_mean" if online else SCORE_KEY
    scores = [row[key] for row in evals if row.get(key) is not None]
    if not scores:
        raise GridError(f"'{run_dir}' has no {'' if online else 'normalised '}evaluation to score")
    kl = [row[KL_KEY] for row in read_jsonl(run_dir / "metrics.jsonl") if KL_KEY in row]
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    where = ("env_steps", "env_step") if online else ("updates", "updates")
    return {
        "evaluations": [
            {
                where[0]: row[where[1]],
                "score": row[key],
                "return": row["return_mean"],
                **({"wall_seconds": row.get("wall_seconds")} if online else {}),
            }
            for row in evals
        ],
        "score": final_score(scores),
        "model_kl": {"min": min(kl), "max": max(kl), "last": kl[-1]} if kl else None,
        "updates_per_sec": summary.get("updates_per_sec"),
        "wall_seconds": summary.get("wall_seconds"),
        "run_dir": str(run_dir),
    }


def seed_entry(grid: Grid, cell: Cell, run_dir: Path, code_root: Path) -> dict[str, Any]:
    """What a finished seed of ``cell`` keeps in its seed file: its record (``seed_record``),
    its config, the data file's sha256, the code's commit and the CPU."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    return {
        "grid": grid.name,
        "cell": cell.slug,
        "config": config,
        "data_sha256": _data_digests(grid, [cell.dataset]),
        "commit": code_commit(code_root),
        "cpu": cpu_model(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "record": seed_record(run_dir, grid.online),
    }


def _data_digests(grid: Grid, datasets: Sequence[str]) -> dict[str, str]:
    """File name -> sha256 of ``datasets``' files (an online grid has none)."""
    names = [] if grid.online else [grid.datasets[d] for d in datasets]
    return {name: sha256_of(grid.data / name) for name in names}


def cell_record(grid: Grid, cell: Cell, entries: dict[int, dict], command: str) -> dict:
    """The JSON a finished cell writes from its seeds' entries (``seed_entry``: seed -> its
    entry; ``command``: the ``alm sweep`` that trains the cell from scratch)."""
    config = {**entries[min(entries)]["config"]}
    config.pop("seed", None), config.pop("run_dir", None)  # each seed's own
    commits = sorted({entry["commit"] for entry in entries.values()})
    episodes, every, steps = config["eval"]["episodes"], config["eval"]["every"], config["steps"]
    unit = "env steps" if grid.online else "updates"
    scored = "return" if grid.online else "D4RL-normalised return"
    return {
        "grid": grid.name,
        "dataset": cell.dataset,
        "method": cell.method,
        "variant": cell.variant,
        "label": cell.label,
        "env": grid.cell_env(cell),
        "data_file": _data_file(grid, cell),
        "data_sha256": _data_digests(grid, list(grid.datasets)),
        "protocol": (
            f"score: the mean of the last {LAST_EVALS} evaluations' {scored} ({episodes} "
            f"episodes each, every {every} {unit}), {steps} {unit}"
        ),
        "overrides": [*grid.overrides, *cell.overrides],
        "command": command,
        "commit": ", ".join(commits),
        "cpu": ", ".join(sorted({entry["cpu"] for entry in entries.values()})),
        "finished": max(entry["finished"] for entry in entries.values()),
        "config": config,
        "seeds": {str(seed): entries[seed]["record"] for seed in sorted(entries)},
    }


def _data_file(grid: Grid, cell: Cell) -> str | None:
    """The file ``cell`` trains on (None online)."""
    return None if grid.online else grid.datasets[cell.dataset]


def seed_path(folder: Path, cell: Cell, seed: int) -> Path:
    """Where a finished seed of ``cell`` is kept until its cell is whole (and after)."""
    return folder / CELLS_FOLDER / SEEDS_FOLDER / cell.slug / f"s{seed}.json"


def read_seed_entries(grid: Grid, cell: Cell, folder: Path) -> dict[int, dict]:
    """The seeds of ``cell`` already finished (their files in ``folder``), each checked to
    be this grid's cell at its planned steps on the same data."""
    entries = {}
    planned, name = planned_steps(grid, cell), _data_file(grid, cell)
    for seed in grid.seeds:
        path = seed_path(folder, cell, seed)
        if not path.is_file():
            continue
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            same = (entry["grid"], entry["cell"], entry["config"]["steps"]) == (
                grid.name, cell.slug, planned)  # fmt: skip
            score = entry["record"]["score"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GridError(f"'{path}' is not a seed file: {first_line(exc)}") from None
        if not same or not _finite(score):
            raise GridError(f"'{path}' is not a finished seed of this grid's {cell.slug}")
        if name is not None and entry["data_sha256"].get(name) != sha256_of(grid.data / name):
            raise GridError(f"'{path}' was trained on another {name}: move it away")
        entries[seed] = entry
    return entries


def cell_path(folder: Path, cell: Cell) -> Path:
    return folder / CELLS_FOLDER / f"{cell.slug}.json"


def read_cells(grid: Grid, folder: Path | None = None) -> dict[str, dict]:
    """The finished cells' records by slug, in the grid's order, from ``folder`` (the grid
    file's by default), each checked by ``check_cell_record``."""
    records = {}
    for cell in grid.cells:
        path = cell_path(folder or grid.folder, cell)
        if path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise GridError(f"cannot read '{path}': {first_line(exc)}") from None
            records[cell.slug] = check_cell_record(grid, cell, record, path)
    return records


def check_cell_record(grid: Grid, cell: Cell, record: object, path: Path) -> dict:
    """``record`` when it is this grid's ``cell``, well formed; else ``GridError`` naming
    ``path``. This grid's: its grid name, dataset, method, variant, data file, the grid's
    seeds and the cell's planned steps; well formed: every seed has a finite score and a
    list of evaluations with finite scores. (The data's sha256 is ``run_grid``'s check.)"""
    if not isinstance(record, dict):
        raise GridError(f"'{path}' is not a cell record (a JSON object)")
    expected = {
        "grid": grid.name,
        "dataset": cell.dataset,
        "method": cell.method,
        "variant": cell.variant,
        "data_file": _data_file(grid, cell),
    }
    config = record.get("config")
    steps = config.get("steps") if isinstance(config, dict) else None
    found = {**{key: record.get(key) for key in expected}, "steps": steps}
    for key, value in {**expected, "steps": planned_steps(grid, cell)}.items():
        if found[key] != value:
            raise GridError(
                f"'{path}' is not this grid's cell {cell.slug}: its {key} is "
                f"{found[key]!r}, not {value!r} (move it away to train the cell)"
            )
    seeds = record.get("seeds")
    wanted = sorted(map(str, grid.seeds))
    if not isinstance(seeds, dict) or sorted(seeds) != wanted:
        got = sorted(seeds) if isinstance(seeds, dict) else seeds
        raise GridError(f"'{path}' holds seeds {got!r}, the grid's are {wanted}")
    for seed, row in seeds.items():
        evaluations = row.get("evaluations") if isinstance(row, dict) else None
        if not (
            isinstance(evaluations, list)
            and _finite(row.get("score"))
            and all(isinstance(e, dict) and _finite(e.get("score")) for e in evaluations)
        ):
            raise GridError(f"'{path}': seed {seed} has no finite score and evaluations")
    return record


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def planned_steps(grid: Grid, cell: Cell) -> int:
    """The steps (updates) the cell's runs train for: its config with the overrides."""
    overrides = [f"env={grid.cell_env(cell)}", *grid.overrides, *cell.overrides]
    return load_config(cell.config or grid.config, overrides).steps


# ------------------------------------------------------------------------------ running
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
            while child.poll() is None:  # each seed's file lands as soon as it finishes
                time.sleep(LAND_EVERY_S)
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
