"""A grid file (YAML, e.g. ``results/hopper-sac/grid.yaml``), read and checked whole.

An offline grid names an env, a folder of D4RL-layout HDF5 files, a config, seeds, overrides
and its cells: one dataset x one method (or an ablation: the method with overrides of its
own, or a config of its own). An online grid (``mode: online``, e.g.
``results/online-cpu/grid.yaml``) has no data: each cell names an env instead of a dataset
and trains ALM or SAC online. ``load_grid`` checks every cell's method, config and overrides
before anything trains (``grid_run``) or is reported (``grid_report``, ``online_report``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


def planned_steps(grid: Grid, cell: Cell) -> int:
    """The steps (updates) the cell's runs train for: its config with the overrides."""
    overrides = [f"env={grid.cell_env(cell)}", *grid.overrides, *cell.overrides]
    return load_config(cell.config or grid.config, overrides).steps
