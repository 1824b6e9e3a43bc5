"""An online grid's table and curves, rebuilt from its cell files alone (``alm grid report``
on a grid with ``mode: online``, e.g. ``results/online-cpu/grid.yaml``).

Per env and method: the interquartile mean of the seeds' evaluation returns at each of the
grid's ``read_at`` env steps and over the whole curve (its area: each seed's mean return
over all its evaluations), each with its 95% stratified-bootstrap interval (rliable); the
probability that the grid's first compared method beats the second at each, with its
interval; and wall-clock on the machine that ran the cells: seconds per env step (of the
process, and per seed where one process trains several), and the seconds each method needed
to first reach the second method's IQM at its last evaluation. One figure: per env, the mean
return over seeds with its 95% band against env steps (with the paper's published ALM curve,
gym -v2 at the paper's widths, drawn for scale) and against wall seconds per seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alm_offline.tools.grid_file import Cell, Grid
from alm_offline.tools.grid_report import grid_report, provenance
from alm_offline.tools.plotting import DPI, SUBPLOT_SIZE, save_figure
from alm_offline.tools.published import published_curve
from alm_offline.tools.stats import (
    iqm,
    mean_interval,
    probability_of_improvement,
    summarise_seeds,
)

PUBLISHED_LABEL = "published ALM (paper widths, gym -v2; for scale)"


@dataclass(frozen=True)
class CellCurves:
    """One cell's seeds on their common evaluation steps: ``returns[k, i]`` and
    ``wall[k, i]`` are seed k's return and run seconds at ``steps[i]``."""

    steps: np.ndarray  # (points,) env steps
    returns: np.ndarray  # (seeds, points)
    wall: np.ndarray  # (seeds, points) the seed's process's seconds before that evaluation
    seeds_per_process: int  # how many seeds shared each process (ALM's batch; SAC: 1)

    def at(self, step: int) -> np.ndarray | None:
        """(seeds,) returns at ``step``; None when it was not evaluated there."""
        where = np.flatnonzero(self.steps == step)
        return self.returns[:, where[0]] if where.size else None

    @property
    def area(self) -> np.ndarray:
        """(seeds,) each seed's mean return over its evaluations: the area under its curve
        over its length."""
        return self.returns.mean(axis=1)

    @property
    def seed_wall(self) -> np.ndarray:
        """(seeds, points) wall seconds per seed: the process's over the seeds it trained."""
        return self.wall / self.seeds_per_process


def cell_curves(grid: Grid, record: dict) -> CellCurves:
    """The curves of a finished online cell's ``record`` on the steps all its seeds have."""
    seeds = [seed["evaluations"] for seed in record["seeds"].values()]
    steps = sorted(set.intersection(*({e["env_steps"] for e in evals} for evals in seeds)))

    def table(key: str) -> np.ndarray:
        rows = [{e["env_steps"]: e.get(key) for e in evals} for evals in seeds]
        return np.array([[_number(row[s]) for s in steps] for row in rows], dtype=np.float64)

    batch = (grid.seeds_per_trial or len(grid.seeds)) if record["method"] == "alm" else 1
    return CellCurves(
        steps=np.array(steps, dtype=np.int64),
        returns=table("return"),
        wall=table("wall_seconds"),
        seeds_per_process=min(batch, len(grid.seeds)),
    )


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _envs(grid: Grid) -> list[str]:
    return list(dict.fromkeys(cell.dataset for cell in grid.cells))


def _cells_of(grid: Grid, env: str) -> list[Cell]:
    return [cell for cell in grid.cells if cell.dataset == env]


def _steps_label(step: int) -> str:
    return f"{step // 1000}k" if step % 1000 == 0 else str(step)


def return_table(grid: Grid, curves: dict[str, CellCurves]) -> str:
    """Markdown: a row per env and method, the IQM [95% CI] of the returns at each
    ``read_at`` step and over the curve; then P(first > second) rows per env."""
    first, second = grid.compare
    points = [_steps_label(step) for step in grid.read_at]
    header = ["env", "method", *[f"IQM at {p}" for p in points], "IQM over the curve (area)"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for env in _envs(grid):
        for cell in _cells_of(grid, env):
            texts = [env, cell.label]
            found = curves.get(cell.slug)
            for step in grid.read_at:
                values = None if found is None else found.at(step)
                texts.append(_iqm_text(values, found))
            texts.append(_iqm_text(None if found is None else found.area, found))
            lines.append("| " + " | ".join(texts) + " |")
        pair = [curves.get(f"{env}--{variant}") for variant in (first, second)]
        texts = [env, f"P({first} > {second})"]
        for step in grid.read_at:
            values = [None if c is None else c.at(step) for c in pair]
            texts.append(_improvement_text(values))
        areas = [None if c is None else c.area for c in pair]
        lines.append("| " + " | ".join([*texts, _improvement_text(areas)]) + " |")
    return "\n".join(lines) + "\n"


def _iqm_text(values: np.ndarray | None, found: CellCurves | None) -> str:
    if found is None:
        return "not measured"
    if values is None:
        return "not evaluated"
    return summarise_seeds(values).iqm.describe()


def _improvement_text(pair: list[np.ndarray | None]) -> str:
    if any(values is None for values in pair):
        return "–"
    return probability_of_improvement(*pair).describe(2)


def first_reach(curves: CellCurves, target: float) -> tuple[int, float] | None:
    """The first evaluation step at which the IQM over seeds reaches ``target``, and the
    mean over seeds of the wall seconds per seed before it; None if it never does."""
    for index, step in enumerate(curves.steps):
        if iqm(curves.returns[:, index]) >= target:
            return int(step), float(np.nanmean(curves.seed_wall[:, index]))
    return None


def wall_table(grid: Grid, curves: dict[str, CellCurves]) -> str:
    """Markdown: per env and method, seconds per env step (per process and per seed) and
    the env steps and seconds per seed to first reach the second compared method's IQM at
    its last evaluation; "" with nothing measured."""
    _, second = grid.compare
    header = ["env", "method", "seeds per process", "s per env step (process)",
              "s per env step (per seed)", f"first reaches {second}'s final IQM"]  # fmt: skip
    lines = []
    for env in _envs(grid):
        reference = curves.get(f"{env}--{second}")
        target = None
        if reference is not None:
            target = summarise_seeds(reference.returns[:, -1]).iqm.value
        for cell in _cells_of(grid, env):
            found = curves.get(cell.slug)
            if found is None:
                continue
            per_step = float(np.nanmean(found.wall[:, -1])) / max(int(found.steps[-1]), 1)
            reach = "–" if target is None else _reach_text(first_reach(found, target), target)
            lines.append(
                f"| {env} | {cell.label} | {found.seeds_per_process} | {per_step:.4f} | "
                f"{per_step / found.seeds_per_process:.4f} | {reach} |"
            )
    if not lines:
        return ""
    return "\n".join(["| " + " | ".join(header) + " |", "|---" * len(header) + "|", *lines]) + "\n"


def _reach_text(reached: tuple[int, float] | None, target: float) -> str:
    if reached is None:
        return f"not by the last evaluation (target {target:.0f})"
    step, seconds = reached
    return f"{_steps_label(step)} env steps, {seconds:.0f} s per seed (target {target:.0f})"


ONLINE_READING = (
    "Returns as `IQM [95% CI]` (rliable, stratified bootstrap over seeds); the area is each "
    "seed's mean return over all its evaluations. Wall seconds are the run's before each "
    "evaluation (evaluations included), on the CPU named here; a process training several "
    "seeds is charged to each seed in equal parts."
)


def online_markdown(grid: Grid, records: dict[str, dict]) -> str:
    curves = {slug: cell_curves(grid, record) for slug, record in records.items()}
    reading = provenance(grid, records, ONLINE_READING)
    parts = [return_table(grid, curves), reading, wall_table(grid, curves)]
    return "\n".join(part for part in parts if part)


def plot_online_curves(grid: Grid, records: dict[str, dict], out: Path) -> Path | None:
    """Per env two panels: mean return over seeds with its 95% band against env steps (and
    the published ALM curve within their range) and against wall seconds per seed."""
    from matplotlib.figure import Figure

    envs = [env for env in _envs(grid) if any(r["env"] == env for r in records.values())]
    if not envs:
        return None
    fig = Figure(figsize=(SUBPLOT_SIZE[0] * 2, SUBPLOT_SIZE[1] * len(envs)), dpi=DPI)
    axes = fig.subplots(len(envs), 2, squeeze=False)
    for (by_steps, by_seconds), env in zip(axes, envs, strict=True):
        top = 0
        for cell in _cells_of(grid, env):
            if cell.slug not in records:
                continue
            curves = cell_curves(grid, records[cell.slug])
            mean, low, high = mean_interval(curves.returns)
            label = f"{cell.label} ({curves.returns.shape[0]} seeds)"
            line = by_steps.plot(curves.steps, mean, label=label)[0]
            by_steps.fill_between(curves.steps, low, high, color=line.get_color(), alpha=0.2)
            seconds = np.nanmean(curves.seed_wall, axis=0)
            by_seconds.plot(seconds, mean, color=line.get_color(), label=label)
            by_seconds.fill_between(seconds, low, high, color=line.get_color(), alpha=0.2)
            top = max(top, int(curves.steps[-1]))
        published = published_curve(env)
        if published is not None:
            shown = published.env_steps <= max(top, published.env_steps[0])
            by_steps.plot(published.env_steps[shown], published.mean[shown], color="gray",
                          linestyle=":", label=PUBLISHED_LABEL)  # fmt: skip
        for ax, unit in ((by_steps, "env steps"), (by_seconds, "wall seconds per seed")):
            ax.set_title(f"{env}: return against {unit}")
            ax.set_xlabel(unit)
            ax.set_ylabel("evaluation return")
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, out)


def online_report(grid: Grid, readme: Path | None = None) -> list[Path]:
    """Write ``results.md`` and ``curves.png`` beside the online grid's file and, given
    ``readme``, its marked section; returns the files written."""
    return grid_report(grid, readme, online_markdown, plot_online_curves)
