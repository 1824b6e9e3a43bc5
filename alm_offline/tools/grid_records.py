"""What a grid keeps of its cells: each finished seed's file
(``cells/seeds/<cell>/s<seed>.json``: its evaluations, score, model KL range, speed, config,
data sha256, commit, CPU), each whole cell's (``cells/<dataset>--<variant>.json``, an online
grid's ``cells/<env>--<variant>.json``), and reading them back checked against the grid.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from alm_offline.errors import first_line
from alm_offline.runtime.files import sha256_of
from alm_offline.runtime.machine import cpu_model
from alm_offline.runtime.provenance import code_commit
from alm_offline.tools.grid_file import Cell, Grid, GridError, planned_steps
from alm_offline.tools.stats import LAST_EVALS, final_score
from alm_offline.training.loggers import read_jsonl

CELLS_FOLDER = "cells"
SEEDS_FOLDER = "seeds"  # cells/seeds/CELL/sSEED.json: each seed, committed as it lands
SCORE_KEY = "normalized_score_mean"
KL_KEY = "model/kl"


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
        "commit": _trained_by(run_dir, code_root),
        "cpu": cpu_model(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "record": seed_record(run_dir, grid.online),
    }


def _trained_by(run_dir: Path, code_root: Path) -> str:
    """The commit of the code that trained ``run_dir``, as its summary names it (runs from
    before summaries named it: the grid's checkout, which then trained it too)."""
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    code = summary.get("code")
    return (
        code["commit"] if isinstance(code, dict) and code.get("commit") else code_commit(code_root)
    )


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
