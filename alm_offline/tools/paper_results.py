"""Online runs read against the paper's published curves: the files of
``benchmarks/paper_results.sh`` (results.json, results.md, curves.png).

Per env (one batched run dir of several seeds, ``seeds=1,2,3,4,5``), at each env step every
seed has evaluated: the mean return over seeds ± its standard error (sample std / sqrt(seeds)),
the population std and each seed's return; beside it the published mean at the same env step
(``published.published_at``: x + the run's own warm-up) with its standard error and spread,
and the ratio of the two means.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alm_offline.config import load_config, run_mode
from alm_offline.errors import AlmError
from alm_offline.runtime.files import write_text_atomic
from alm_offline.tools.plotting import (
    PlotError,
    RunCurve,
    find_run_dirs,
    plot_curves,
    read_run_curve,
)
from alm_offline.tools.published import PublishedPoint, published_at


class PaperResultsError(AlmError):
    """Run dirs that cannot be read as an env's seeds (one-line message)."""


@dataclass(frozen=True)
class ResultRow:
    """One env at one env step: this project's seeds beside the published figure."""

    env: str
    env_step: int
    updates: int  # env_step - warm-up: the published curves' x
    seeds: int
    mean: float
    stderr: float  # sample std / sqrt(seeds); 0 for one seed
    std: float  # population std over seeds
    per_seed: tuple[float, ...]  # in seed order
    published: PublishedPoint | None
    ratio: float | None  # mean / published mean (None without a published point)


def find_run_dirs_or_none(path: Path) -> list[Path]:
    """The run dirs at or below ``path``; [] for a folder with none (no error)."""
    try:
        return find_run_dirs([Path(path)])
    except PlotError:
        return []


def env_curves(run_dirs: Sequence[Path]) -> dict[str, tuple[list[RunCurve], int]]:
    """Each env's seed curves (eval ``return_mean`` over env steps) and its runs' warm-up
    (``agent.warmup_steps``), from run dirs or folders holding them (a folder with none adds
    nothing); a batched run dir counts as its seeds. Raises ``PaperResultsError`` for an env
    whose runs differ in warm-up or repeat a seed, and for offline runs."""
    envs: dict[str, tuple[list[RunCurve], int]] = {}
    for run_dir in (run for path in run_dirs for run in find_run_dirs_or_none(path)):
        curve = read_run_curve(run_dir)
        if not run_mode(curve.mode).online:
            raise PaperResultsError(f"'{run_dir}' is an offline run: the paper's curves are online")
        warmup = load_config(str(run_dir / "config.yaml")).agent.warmup_steps
        curves, seen_warmup = envs.setdefault(curve.env, ([], warmup))
        if warmup != seen_warmup:
            raise PaperResultsError(
                f"runs of {curve.env} differ in agent.warmup_steps ({seen_warmup}, {warmup})"
            )
        if any(c.seed == curve.seed for c in curves):
            raise PaperResultsError(f"seed {curve.seed} of {curve.env} appears twice ('{run_dir}')")
        curves.append(curve)
    for curves, _ in envs.values():
        curves.sort(key=lambda c: c.seed)
    return envs


def result_rows(env: str, curves: Sequence[RunCurve], warmup_steps: int) -> list[ResultRow]:
    """The rows of ``env``: one per env step that every curve evaluated at, in order."""
    common = curves[0].x
    for curve in curves[1:]:
        common = np.intersect1d(common, curve.x)
    rows = []
    for step in common:
        returns = np.array([c.y[np.searchsorted(c.x, step)] for c in curves])
        stderr = float(returns.std(ddof=1) / math.sqrt(returns.size)) if returns.size > 1 else 0.0
        published = published_at(env, int(step), warmup_steps)
        mean = float(returns.mean())
        ratio = mean / published.mean if published is not None and published.mean else None
        rows.append(
            ResultRow(
                env=env,
                env_step=int(step),
                updates=int(step) - warmup_steps,
                seeds=int(returns.size),
                mean=mean,
                stderr=stderr,
                std=float(returns.std()),
                per_seed=tuple(float(r) for r in returns),
                published=published,
                ratio=ratio,
            )
        )
    return rows


def _published_cell(point: PublishedPoint | None) -> str:
    if point is None:
        return "-"
    where = "Table 1" if point.source == "table1" else f"x={point.x}"
    return f"{point.mean:.0f} ± {point.stderr:.0f} (std {point.std:.0f}; {where})"


def results_markdown(rows: Sequence[ResultRow], header: str = "") -> str:
    """A table per env: env step, updates, mean ± SE, std, seeds' returns, published, ratio."""
    lines = [header, ""] if header else []
    lines += [
        "Published: the authors' released curves (5 seeds, gym v2), x = updates after their",
        "warm-up, read at env step = x + this run's warm-up (docs/reference-loop.md).",
        "",
    ]
    for env in dict.fromkeys(r.env for r in rows):
        env_rows = [r for r in rows if r.env == env]
        lines += [
            f"### {env} ({env_rows[0].seeds} seeds)",
            "",
            "| env step | updates | mean ± SE | std | per seed | published mean ± SE | ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in env_rows:
            seeds = " / ".join(f"{v:.0f}" for v in r.per_seed)
            ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
            lines.append(
                f"| {r.env_step} | {r.updates} | {r.mean:.0f} ± {r.stderr:.0f} | {r.std:.0f} "
                f"| {seeds} | {_published_cell(r.published)} | {ratio} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_paper_results(
    out: Path, run_dirs: Sequence[Path], header: str = "", extra: dict[str, Any] | None = None
) -> list[ResultRow]:
    """Write ``out/results.json`` (the rows, plus ``extra``), ``out/results.md`` and
    ``out/curves.png`` (seed mean ± std beside the published curve) for the runs at or below
    ``run_dirs`` (no curves, and "No runs." under the header, when there are none); each file
    through a temporary one. Returns the rows."""
    envs = env_curves(run_dirs)
    rows = [
        row for env, (curves, warmup) in envs.items() for row in result_rows(env, curves, warmup)
    ]
    out.mkdir(parents=True, exist_ok=True)
    data = {"rows": [asdict(r) for r in rows], **(extra or {})}
    write_text_atomic(out / "results.json", json.dumps(data, indent=1) + "\n")
    write_text_atomic(
        out / "results.md", results_markdown(rows, header) if rows else header + "\n\nNo runs.\n"
    )
    if envs:
        plot_curves(
            [c for curves, _ in envs.values() for c in curves], out / "curves.png", paper=True
        )
    return rows


def run_progress(run_dir: Path) -> str:
    """Where a run dir stands, for a script deciding its next stage: ``new`` (no run there),
    ``unfinished N`` (it never finished a stage; N is its config's ``steps``: resume it towards
    N or less) or ``finished N`` (its last finished stage reached N env steps, ``summary.json``'s:
    resume it with a larger ``steps``, which also continues a later stage stopped at a
    checkpoint past N)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        return "new"
    try:
        reached = int(json.loads((run_dir / "summary.json").read_text())["env_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"unfinished {load_config(str(run_dir / 'config.yaml')).steps}"
    return f"finished {reached}"
