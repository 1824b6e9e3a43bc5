"""Learning curves of run directories: one subplot per env, a line per method, its mean
across seeds with a band (the mean's 95% bootstrap interval, or ± std).

A run directory (``training/rundir.py``) holds ``config.yaml`` (env, seed), ``eval.jsonl``
(evaluation returns) and ``metrics.jsonl`` (training diagnostics). ``read_run_curve`` turns one
of its metrics into a curve over env steps (online runs) or gradient updates (offline runs);
``plot_runs`` (``alm plot``) groups the curves by env and method and draws the seed mean with
its band (``--band ci``: the mean's 95% bootstrap interval; ``std``: ± std), optionally next to
the paper's published ALM(3) curve.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work without a display

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from alm_offline.config import MODES, OFFLINE, ONLINE, ConfigError, load_config, run_mode
from alm_offline.errors import AlmError, first_line
from alm_offline.runtime.files import replaced_on_success
from alm_offline.tools.published import published_curve
from alm_offline.tools.stats import BANDS, mean_interval
from alm_offline.training.loggers import read_jsonl
from alm_offline.training.rundir import batch_seed_dirs, read_summary


class PlotError(AlmError):
    """Run directories or an output path that cannot be plotted as asked (one-line message)."""


# Keys eval.jsonl rows always have; a metric among them is known even before the first evaluation.
EVAL_METRICS = (
    "return_mean",
    "return_std",
    "return_min",
    "return_max",
    "normalized_score_mean",
    "normalized_score_std",
)
SUBPLOT_SIZE = (5.0, 3.5)  # inches per env subplot
DPI = 100  # so a figure is exactly (500 * columns) x (350 * rows) pixels
MAX_COLUMNS = 3
FIND_DEPTH = 3  # how deep ``find_run_dirs`` looks below a folder that is not a run dir


@dataclass(frozen=True)
class RunCurve:
    """One metric of one run: ``y[i]`` at env step (online) or update (offline) ``x[i]``."""

    env: str
    seed: int
    mode: str  # "online" (x = env steps) or "offline" (x = gradient updates)
    x: np.ndarray  # (N,) float64, strictly increasing
    y: np.ndarray  # (N,) float64; nan where the run logged a non-finite value
    run_dir: Path
    method: str = "alm"  # alm, or a d3rlpy baseline: one line per method in a subplot
    dataset: str = ""  # offline: the dataset's file stem or Minari id ("" online)


def _run_config(run_dir: Path):
    """The run's ``RunConfig`` (``run_dir/config.yaml``)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise PlotError(f"'{run_dir}' is not a run directory (no config.yaml)")
    try:
        cfg = load_config(str(path))
    except ConfigError as exc:
        raise PlotError(f"'{path}': {exc}") from None
    return cfg


def _read_rows(path: Path) -> list[dict]:
    try:
        return read_jsonl(path)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlotError(f"cannot read '{path}': {first_line(exc)}") from None


def _run_mode(run_dir: Path, rows: list[dict], has_dataset: bool) -> str:
    """``summary.json``'s mode; else online when the rows count env steps."""
    mode = read_summary(run_dir).get("mode")
    if mode in MODES:
        return mode
    if rows:  # the step key its rows count
        counted = ONLINE if any(ONLINE.step_key in row for row in rows) else OFFLINE
    else:
        counted = OFFLINE if has_dataset else ONLINE
    return counted.name


def _number(value: object, metric: str, path: Path) -> float:
    """A logged value as a float (the loggers write non-finite floats as strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PlotError(f"metric '{metric}' in '{path}' is not a number")
    try:
        return float(value)
    except ValueError:
        raise PlotError(f"metric '{metric}' in '{path}' is not a number") from None


def read_run_curve(run_dir: Path, metric: str = "return_mean") -> RunCurve:
    """The curve of ``metric`` in ``run_dir``: from ``eval.jsonl``, else ``metrics.jsonl``.

    x is ``env_step`` for online runs and ``updates`` for offline runs (mode from
    ``summary.json``, else from the rows). Raises ``PlotError`` for a folder without
    ``config.yaml``, a metric no row of either file has, or a known metric without rows yet.
    """
    run_dir = Path(run_dir)
    cfg = _run_config(run_dir)
    env, seed, has_dataset, evaluates = (
        cfg.env,
        cfg.seed,
        cfg.dataset is not None,
        cfg.eval.every > 0,
    )
    dataset = (
        Path(cfg.dataset).stem if cfg.dataset and cfg.dataset.endswith(".hdf5") else cfg.dataset
    )
    eval_rows = _read_rows(run_dir / "eval.jsonl")
    metric_rows = _read_rows(run_dir / "metrics.jsonl")
    mode = _run_mode(run_dir, eval_rows + metric_rows, has_dataset)
    if not env:  # offline data that names no env, or a config stored before it was settled
        env = "unknown env"
    x_key = run_mode(mode).step_key
    source = run_dir / "eval.jsonl"
    rows = [row for row in eval_rows if metric in row]
    if not rows:
        source = run_dir / "metrics.jsonl"
        rows = [row for row in metric_rows if metric in row]
    if not rows:
        known = {key for row in eval_rows + metric_rows for key in row}
        names = sorted(known - {"env_step", "updates", "returns"})
        if metric in EVAL_METRICS and not eval_rows and not evaluates and names:
            example = "loss/model_bound" if "loss/model_bound" in names else names[0]
            raise PlotError(
                f"run dir '{run_dir}' never evaluates (eval.every=0): plot a metric it logs "
                f"with --metric, e.g. {example}"
            )
        if not known or (metric in EVAL_METRICS and not eval_rows):
            raise PlotError(f"run dir '{run_dir}' has no '{metric}' rows yet")
        raise PlotError(f"unknown metric '{metric}' (run dir '{run_dir}' has: {', '.join(names)})")
    points: dict[float, float] = {}  # by x; a later row for the same x wins
    for row in rows:
        if x_key not in row:
            raise PlotError(f"rows of '{source}' have no '{x_key}' ({mode} run)")
        points[_number(row[x_key], x_key, source)] = _number(row[metric], metric, source)
    x = np.array(sorted(points), dtype=np.float64)
    y = np.array([points[key] for key in x], dtype=np.float64)
    return RunCurve(
        env=env,
        seed=seed,
        mode=mode,
        x=x,
        y=y,
        run_dir=run_dir,
        method=cfg.method,
        dataset="" if run_mode(mode).online else (dataset or ""),
    )


def group_curves(curves: Iterable[RunCurve]) -> dict[str, list[RunCurve]]:
    """Curves by env, in first-seen order, each group sorted by seed.

    Offline curves of an env that also has online curves go under ``"<env> (offline)"``: their x
    counts updates, not env steps, so they are never averaged with online ones.
    """
    curves = list(curves)
    online_envs = {c.env for c in curves if run_mode(c.mode).online}
    groups: dict[str, list[RunCurve]] = {}
    for curve in curves:
        key = curve.env
        if not run_mode(curve.mode).online and curve.env in online_envs:
            key = f"{curve.env} (offline)"
        groups.setdefault(key, []).append(curve)
    return {key: sorted(group, key=lambda c: c.seed) for key, group in groups.items()}


def mean_std(curves: Sequence[RunCurve]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, std) across ``curves``, each (M,); std is the population std (ddof=0).

    x is the x values every curve has. When they share none, x is the shortest curve's x within
    the range all curves cover, and every curve is linearly interpolated onto it.
    """
    if not curves:
        raise PlotError("no curves to average")
    common = curves[0].x
    for curve in curves[1:]:
        common = np.intersect1d(common, curve.x)
    if common.size:
        ys = np.stack([c.y[np.searchsorted(c.x, common)] for c in curves])
        return common, ys.mean(axis=0), ys.std(axis=0)
    low = max(float(c.x[0]) for c in curves)
    high = min(float(c.x[-1]) for c in curves)
    shortest = min(curves, key=lambda c: c.x.size)
    x = shortest.x[(shortest.x >= low) & (shortest.x <= high)]
    if not x.size:
        dirs = ", ".join(f"'{c.run_dir}'" for c in curves)
        raise PlotError(f"runs {dirs} of {curves[0].env} cover no common x range")
    ys = np.stack([np.interp(x, c.x, c.y) for c in curves])
    return x, ys.mean(axis=0), ys.std(axis=0)


def find_run_dirs(paths: Iterable[Path], depth: int = FIND_DEPTH) -> list[Path]:
    """Each path that is a run dir, or else the run dirs up to ``depth`` levels below it.

    Order is kept (sorted within a folder); duplicates are dropped. Raises ``PlotError`` for a
    missing path and for a folder without runs.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise PlotError(f"'{path}' does not exist")
        if (path / "config.yaml").is_file():
            runs = batch_seed_dirs(path) or [path]
        else:
            runs = _runs_below(path, depth) if path.is_dir() else []
            if not runs:
                raise PlotError(
                    f"'{path}' is not a run directory and holds none "
                    f"(no config.yaml within {depth} levels)"
                )
        found += [run for run in runs if run not in found]
    return found


def _runs_below(folder: Path, depth: int) -> list[Path]:
    if depth <= 0:
        return []
    runs: list[Path] = []
    try:
        children = sorted(child for child in folder.iterdir() if child.is_dir())
    except OSError:
        return []
    for child in children:
        if (child / "config.yaml").is_file():
            runs += batch_seed_dirs(child) or [child]
        else:
            runs += _runs_below(child, depth - 1)
    return runs


def _check_out(out: Path, fig: Figure) -> str:
    """The image format of ``out`` (its suffix), after checking that ``out`` can be written."""
    if out.is_dir():
        raise PlotError(f"output '{out}' is a directory")
    fmt = out.suffix.lstrip(".").lower()
    if not fmt:
        raise PlotError(f"output '{out}' needs a suffix such as .png, .pdf or .svg")
    if fmt not in fig.canvas.get_supported_filetypes():
        raise PlotError(f"output '{out}': unsupported image format '.{fmt}'")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlotError(f"cannot create folder '{out.parent}': {exc.strerror}") from None
    return fmt


def save_figure(fig: Figure, out: str | Path, dpi: float | None = None) -> Path:
    """Check ``out`` (``PlotError``), then save ``fig`` through a temporary file + rename."""
    out = Path(out)
    fmt = _check_out(out, fig)
    try:
        with replaced_on_success(out) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
    except OSError as exc:
        raise PlotError(f"cannot write '{out}': {exc.strerror or exc}") from None
    return out


def _short_number(value: float, _position: object = None) -> str:
    """Tick label: 1500 -> 1.5k, 200000 -> 200k, 2e6 -> 2M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def mean_band(curves: Sequence[RunCurve], band: str = "ci") -> tuple[np.ndarray, ...]:
    """(x, mean, low, high) across ``curves`` on ``mean_std``'s x: the band is the mean's 95%
    stratified-bootstrap interval over runs (rliable) or ± the population std."""
    x, mean, std = mean_std(curves)
    if band == "std" or len(curves) < 2:
        return x, mean, mean - std, mean + std
    ys = np.stack([np.interp(x, c.x, c.y) for c in curves])
    _, low, high = mean_interval(ys)
    return x, mean, low, high


def _line_label(curves: Sequence[RunCurve]) -> str:
    method = curves[0].method
    name = "ALM" if method == "alm" else method.upper()
    where = f" {curves[0].dataset}" if curves[0].dataset else ""
    return f"{name}{where} ({len(curves)} seed{'s' if len(curves) > 1 else ''})"


def _plot_group(
    ax, name: str, group: list[RunCurve], metric: str, paper: bool, band: str = "ci"
) -> None:
    lines: dict[tuple[str, str], list[RunCurve]] = {}
    for curve in group:  # one line per method and dataset, in first-seen order
        lines.setdefault((curve.method, curve.dataset), []).append(curve)
    for curves in lines.values():
        x, mean, low, high = mean_band(curves, band)
        label = _line_label(curves)
        line = ax.plot(x, mean, marker="o" if x.size == 1 else None, label=label)[0]
        if len(curves) > 1:
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.25)
    online = run_mode(group[0].mode).online
    published = published_curve(group[0].env) if paper and online else None
    if published is not None:  # within the runs' x range, so the runs' axis stays readable
        top = max(float(c.x.max()) for c in group)
        shown = published.env_steps <= max(top, published.env_steps[0])
        ax.plot(
            published.env_steps[shown],
            published.mean[shown],
            "--o",
            color="black",
            markersize=3,
            label="paper ALM(3), 5 seeds",
        )
    ax.set_title(name)
    ax.set_xlabel("env steps" if online else "updates")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.xaxis.set_major_formatter(FuncFormatter(_short_number))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def plot_curves(
    curves: Sequence[RunCurve],
    out: Path,
    metric: str = "return_mean",
    paper: bool = False,
    band: str = "ci",
) -> Path:
    """Draw ``curves`` (one subplot per ``group_curves`` group) into the image ``out``.

    The figure is ``500 * columns`` x ``350 * rows`` pixels, at most 3 columns. ``paper`` adds
    the published curve (``published.published_curve``, on the env-step axis) to online
    groups of those envs (``metric`` must be ``return_mean``).
    Written through a temporary file in ``out``'s folder (created if missing); returns ``out``.
    """
    out = Path(out)
    if not curves:
        raise PlotError("no runs to plot")
    if paper and metric != "return_mean":
        raise PlotError(
            f"the paper's curves are returns; --paper needs metric return_mean, not '{metric}'"
        )
    groups = group_curves(curves)
    columns = min(len(groups), MAX_COLUMNS)
    rows = math.ceil(len(groups) / columns)
    fig = Figure(figsize=(SUBPLOT_SIZE[0] * columns, SUBPLOT_SIZE[1] * rows), dpi=DPI)
    _check_out(out, fig)  # before drawing
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, group) in zip(axes, groups.items(), strict=False):
        _plot_group(ax, name, group, metric, paper, band)
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_learning_curves(
    run_dirs: Sequence[Path], out: Path, metric: str = "return_mean", paper: bool = False
) -> Path:
    """Read ``metric`` from each run dir and plot the curves into ``out`` (see ``plot_curves``)."""
    return plot_curves([read_run_curve(Path(d), metric) for d in run_dirs], out, metric, paper)


def plot_runs(
    paths: Sequence[Path],
    out: Path,
    metric: str = "return_mean",
    paper: bool = False,
    band: str = "ci",
) -> str:
    """``alm plot``: the run dirs at or below ``paths`` plotted into ``out``, a line per method
    (and dataset) with its band over seeds (``mean_band``); one line saying so."""
    if band not in BANDS:
        raise PlotError(f"--band must be one of {', '.join(BANDS)}, got '{band}'")
    curves = [read_run_curve(run, metric) for run in find_run_dirs(paths)]
    plot_curves(curves, out, metric, paper, band)
    runs, envs = len(curves), len(group_curves(curves))
    return f"wrote {out} ({runs} run{'s' * (runs != 1)}, {envs} env{'s' * (envs != 1)})"


# ---------------------------------------------------------------- analysis figures
ANALYSIS_FIGSIZE = (10.0, 4.0)  # inches at DPI: 1000 x 400 pixels


def plot_bias(result: Any, out: str | Path) -> Path:
    """``alm analyze bias`` (an ``analysis.BiasResult``): estimate vs MC return with y = x,
    and a histogram of the normalised bias."""
    fig = Figure(figsize=ANALYSIS_FIGSIZE, dpi=DPI)
    left, right = fig.subplots(1, 2)
    left.scatter(result.mc_returns, result.estimates, s=6, alpha=0.5)
    low = float(min(result.mc_returns.min(), result.estimates.min()))
    high = float(max(result.mc_returns.max(), result.estimates.max()))
    left.plot([low, high], [low, high], "k--", linewidth=1, label="y = x")
    left.set_xlabel("Monte-Carlo return")
    left.set_ylabel(f"estimate of L^{result.horizon}")
    left.set_title(f"{result.env}: {result.n_states} states")
    left.legend(loc="upper left")
    finite = result.normalized_bias[np.isfinite(result.normalized_bias)]
    if len(finite):
        right.hist(finite, bins=40)
    right.axvline(0.0, color="k", linestyle="--", linewidth=1)
    right.set_xlabel("normalised bias (estimate - MC) / |mean MC|")
    right.set_ylabel("states")
    right.set_title(f"mean {result.normalized_bias_mean:.3f}, std {result.normalized_bias_std:.3f}")
    fig.tight_layout()
    return save_figure(fig, out)


def plot_rollout(result: Any, out: str | Path) -> Path:
    """``alm analyze rollout`` (an ``analysis.RolloutResult``): latent coordinates over steps,
    encoder solid vs model dashed; right: the L2 error."""
    steps = np.arange(result.steps + 1)
    fig = Figure(figsize=ANALYSIS_FIGSIZE, dpi=DPI)
    left, right = fig.subplots(1, 2)
    for i in range(result.true_coords.shape[1]):
        color = f"C{i}"
        left.plot(steps, result.true_coords[:, i], color=color, label=f"z[{i}] encoder")
        left.plot(
            steps,
            result.predicted_coords[:, i],
            color=color,
            linestyle="--",
            label=f"z[{i}] model",
        )
    left.set_xlabel("step")
    left.set_ylabel("latent coordinate")
    left.set_title(f"{result.env}: encoder (solid) vs model unroll (dashed)")
    left.legend(fontsize="small")
    right.plot(steps, result.errors)
    right.set_xlabel("step")
    right.set_ylabel("L2 error of predicted latent")
    right.set_title(
        f"relative error <= {result.accuracy_threshold} for {result.first_accurate_steps} steps"
    )
    fig.tight_layout()
    return save_figure(fig, out)
