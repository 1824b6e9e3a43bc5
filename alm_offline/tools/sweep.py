"""A grid (env x seed) of online training runs as Ray tasks, summarised like the paper's Table 1.

``run_sweep`` validates everything first (configs, env ids, the output folder, a cluster address
that answers), then starts or joins Ray, runs one task per trial (``prepare_new`` +
``train_online`` in the worker) and writes, in the sweep folder:

* ``sweep.json``: the grid, the overrides and every trial's status, summary or error
  (rewritten after each finished trial, so an interrupted sweep still shows what finished);
* ``results.csv``: one row per trial;
* ``results.md``: a Markdown table, one column per env, of ``mean ± std`` over seeds of the
  trials' final ``eval_return_mean``, with the paper's Table 1 row where it reports the env;
* ``curves.png``: the learning curves of the trials that succeeded.

A failure inside a trial (or a crashed worker) becomes a ``failed`` row; it never loses the
other trials' results. On a multi-node cluster the sweep folder must be on a filesystem that
every node shares (trials write their run dirs there), and ``alm_offline`` must be installed
on every node.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alm_offline.config import ConfigError, RunConfig, config_from_dict, load_config, to_dict
from alm_offline.errors import AlmError
from alm_offline.training.envs import describe_env
from alm_offline.training.rundir import write_text_atomic

RAY_MISSING = "alm sweep needs Ray: pip install 'alm-offline[ray]'"
SWEEP_FILE = "sweep.json"
CSV_COLUMNS = (
    "env",
    "seed",
    "status",
    "eval_return_mean",
    "eval_return_std",
    "env_steps",
    "wall_seconds",
    "run_dir",
    "error",
)
ADDRESS_TIMEOUT_S = 5.0


class SweepError(AlmError):
    """A sweep that cannot start as asked (one-line message)."""


@dataclass
class SweepResult:
    """What a finished sweep wrote; ``trials`` in grid order (env-major, then seed)."""

    out: Path
    trials: list[dict[str, Any]]
    table: str  # the Markdown of results.md
    curves: Path | None  # None when no trial succeeded or the plot failed
    notes: list[str] = field(default_factory=list)  # e.g. why curves.png is missing

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["status"] != "ok"]

    @property
    def all_ok(self) -> bool:
        return not self.failed


# ------------------------------------------------------------------------------ validation
def trial_threads(cpus_per_trial: float) -> int:
    """Torch threads of one trial: its CPU share rounded, at least 1."""
    return max(1, round(cpus_per_trial))


def trial_configs(
    config: str | None,
    overrides: Sequence[str],
    envs: Sequence[str],
    seeds: Sequence[int],
    out: Path,
    cpus_per_trial: float,
) -> list[RunConfig]:
    """The config of every trial in grid order; ``ConfigError`` names the first bad one."""
    threads = trial_threads(cpus_per_trial)
    cfgs = []
    for env in envs:
        for seed in seeds:
            extra = (f"env={env}", f"seed={seed}", f"run_dir={out / env / f's{seed}'}")
            try:
                cfgs.append(load_config(config, (*overrides, *extra, f"threads={threads}")))
            except ConfigError as exc:
                raise ConfigError(f"{exc} (trial {env} seed {seed})") from None
    return cfgs


HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4  # the frame type a gRPC server answers the hello with


def check_address(address: str, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """Fail fast (``SweepError``) unless ``host:port`` answers as Ray does; ``auto`` passes.

    Ray's head (GCS) and Ray Client ports are gRPC servers: sent the HTTP/2 client preface
    and an empty SETTINGS frame, they answer with a SETTINGS frame. Any other listener (or
    none) is refused before Ray starts. Passing this check is not trust: joining a cluster
    runs its code and unpickles its results (see ``alm sweep --help``).
    """
    if address == "auto":
        return
    bare = address.split("://", 1)[1] if "://" in address else address
    host, _, port = bare.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise SweepError(f"--address must be host:port or auto, got '{address}'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            conn.sendall(HTTP2_HELLO)
            header = b""
            while len(header) < 9:
                chunk = conn.recv(9 - len(header))
                if not chunk:
                    break
                header += chunk
    except TimeoutError:
        header = b""
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SweepError(f"no Ray cluster answers at {address}: {reason}") from None
    if len(header) < 9 or header[3] != HTTP2_SETTINGS:
        raise SweepError(
            f"{address} does not answer as a Ray cluster (a gRPC server) does; "
            "check the host and port of the cluster's head"
        )


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out '{out}' exists and is not a directory")
    if (out / SWEEP_FILE).exists() and not overwrite:
        raise SweepError(f"'{out}' already holds a sweep; use --overwrite to replace it")


def prepare_out_and_cluster(
    out: Path, overwrite: bool, address: str | None, cpus_per_trial: float, gpus_per_trial: float
) -> None:
    """Check the sweep folder and that the cluster (or this machine) can hold a trial, then
    create the folder; ``SweepError`` (one line) otherwise."""
    _check_out(out, overwrite)
    if address is None:
        cpus, gpus = _local_resources()
        if cpus_per_trial > cpus or gpus_per_trial > gpus:
            raise SweepError(
                f"a trial asks for {cpus_per_trial} CPUs and {gpus_per_trial} GPUs; "
                f"this machine has {cpus} CPUs and {gpus} GPUs"
            )
    else:
        check_address(address)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"cannot create --out '{out}': {exc.strerror}") from None


def import_ray():
    try:
        import ray
    except ImportError:
        raise SweepError(RAY_MISSING) from None
    return ray


def parse_grid(envs: str, seeds: str, option: str = "--envs") -> tuple[list[str], list[int]]:
    """``--envs`` (or ``option``) and ``--seeds`` as comma-separated text -> (names, seeds)."""

    def items(text: str, option: str) -> list[str]:
        parts = [part.strip() for part in text.split(",")]
        if not text.strip() or not all(parts):
            raise SweepError(f"{option} must be a comma-separated list, got '{text}'")
        return parts

    env_ids = items(envs, option)
    try:
        return env_ids, [int(seed) for seed in items(seeds, "--seeds")]
    except ValueError:
        raise SweepError(f"--seeds must be comma-separated integers, got '{seeds}'") from None


def _check_grid(envs: Sequence[str], seeds: Sequence[int], cpus: float, gpus: float) -> None:
    if not envs or not seeds:
        raise SweepError("give at least one env (--envs) and one seed (--seeds)")
    for name, items in (("env", envs), ("seed", seeds)):
        repeated = sorted({str(x) for x in items if list(items).count(x) > 1})
        if repeated:
            raise SweepError(f"{name} listed twice: {', '.join(repeated)}")
    if cpus <= 0:
        raise SweepError(f"--cpus-per-trial must be positive, got {cpus}")
    if gpus < 0:
        raise SweepError(f"--gpus-per-trial must be >= 0, got {gpus}")


# ------------------------------------------------------------------------------- one trial
def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def run_trial(cfg_dict: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Train one trial (runs inside a Ray worker); never raises, failures become a row."""
    env, seed, run_dir = cfg_dict.get("env"), cfg_dict.get("seed"), cfg_dict.get("run_dir")
    row: dict[str, Any] = {"env": env, "seed": seed, "run_dir": run_dir}
    try:
        from alm_offline.training.online import train_online
        from alm_offline.training.rundir import RunDirLock, prepare_new

        cfg = config_from_dict(cfg_dict)
        path = Path(cfg.run_dir)  # type: ignore[arg-type]
        with RunDirLock(path):
            prepare_new(path, cfg, overwrite=overwrite)
            summary = train_online(cfg, path, quiet=True)
    except Exception as exc:
        return {**row, "status": "failed", "summary": None, "error": _first_line(exc)}
    return {**row, "status": "ok", "summary": summary, "error": None}


# ---------------------------------------------------------------------------------- tables
def score_cell(values: list[float], total: int) -> str:
    """``mean ± std`` (population std) of ``values``, with ``(k/n seeds)`` when some of the
    ``total`` trials gave none; ``failed`` when none did."""
    if not values:
        return "failed"
    cell = f"{np.mean(values):.1f} ± {np.std(values):.1f}"
    return cell if len(values) == total else f"{cell} ({len(values)}/{total} seeds)"


def results_table(
    trials: Sequence[dict[str, Any]],
    envs: Sequence[str],
    name: str,
    paper: dict[str, tuple[float, float]],
) -> str:
    """Markdown like the paper's Table 1: ``mean ± std`` over seeds (population std) of each
    env's final ``eval_return_mean``; a trial without a final evaluation counts as failed."""
    ours = []
    for env in envs:
        rows = [t for t in trials if t["env"] == env]
        values = [
            float(t["summary"]["eval_return_mean"])
            for t in rows
            if t["status"] == "ok" and t["summary"].get("eval_return_mean") is not None
        ]
        ours.append(score_cell(values, len(rows)))
    lines = [
        "| Method | " + " | ".join(envs) + " |",
        "|---|" + "---|" * len(envs),
        f"| ALM (this run: {name}) | " + " | ".join(ours) + " |",
    ]
    if any(env in paper for env in envs):
        cells = [f"{paper[e][0]:.1f} ± {paper[e][1]:.1f}" if e in paper else "–" for e in envs]
        lines.append("| ALM(3), paper Table 1 (200k steps) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def results_csv(trials: Sequence[dict[str, Any]]) -> str:
    """One CSV row per trial (``CSV_COLUMNS``); empty cells where a failed trial has no value."""
    rows = []
    for t in trials:
        summary = t.get("summary") or {}
        row = {key: summary.get(key) for key in CSV_COLUMNS[3:7]}
        row.update(env=t["env"], seed=t["seed"], status=t["status"], run_dir=t["run_dir"])
        rows.append({**row, "error": t.get("error")})
    return csv_text(rows, CSV_COLUMNS)


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as CSV with ``columns``; None becomes an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


# ----------------------------------------------------------------------------------- sweep
def default_out(name: str) -> Path:
    return Path("sweeps") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _sweep_name(name: str | None, config: str | None) -> str:
    if name:
        return name
    return Path(config).stem if config else "default"


def _local_resources() -> tuple[int, int]:
    import torch

    return os.cpu_count() or 1, torch.cuda.device_count()


def run_sweep(
    config: str | None,
    envs: Sequence[str],
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
    *,
    address: str | None = None,
    gpus_per_trial: float = 0.0,
    cpus_per_trial: float = 1.0,
    out: Path | None = None,
    name: str | None = None,
    overwrite: bool = False,
    report: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every (env, seed) trial as a Ray task and write the sweep folder.

    Raises ``SweepError``, ``ConfigError`` or ``EnvError`` (one line) before Ray starts when
    the input cannot work; trial failures are rows of the result, not exceptions.
    ``report`` receives one line per finished trial.
    """
    say = report or (lambda line: None)
    _check_grid(envs, seeds, cpus_per_trial, gpus_per_trial)
    ray = import_ray()
    name = _sweep_name(name, config)
    out = (out if out is not None else default_out(name)).absolute()
    cfgs = trial_configs(config, overrides, envs, seeds, out, cpus_per_trial)
    for env in envs:
        describe_env(env)
    prepare_out_and_cluster(out, overwrite, address, cpus_per_trial, gpus_per_trial)

    record: dict[str, Any] = {
        "name": name,
        "config": config,
        "envs": list(envs),
        "seeds": list(seeds),
        "overrides": list(overrides),
        "address": address,
        "cpus_per_trial": cpus_per_trial,
        "gpus_per_trial": gpus_per_trial,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "status": "running",
        "trials": [
            {"env": c.env, "seed": c.seed, "run_dir": c.run_dir, "status": "pending"} for c in cfgs
        ],
    }

    say(f"sweep {name}: {len(cfgs)} trials on Ray ({address or 'local'}), out {out}")
    run_grid(
        ray,
        address,
        out,
        record,
        run_trial,
        [(to_dict(c), overwrite) for c in cfgs],
        lambda i, exc: failed_row(cfgs[i].env, cfgs[i].seed, cfgs[i].run_dir, exc),
        lambda row: say(_describe(row)),
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
    )
    return _write_results(out, record, name)


def run_grid(
    ray: Any,
    address: str | None,
    out: Path,
    record: dict[str, Any],
    function: Callable[..., dict[str, Any]],
    arguments: Sequence[tuple],
    failed_row: Callable[[int, BaseException], dict[str, Any]],
    describe: Callable[[dict[str, Any]], None],
    *,
    cpus_per_trial: float,
    gpus_per_trial: float,
) -> None:
    """``run_on_ray`` with ``record`` (its ``trials`` in grid order) kept in
    ``out/sweep.json``: written before, after each finished trial (so an interrupted sweep
    still shows what finished) and at the end, with the sweep's status."""

    def save_record() -> None:
        write_text_atomic(out / SWEEP_FILE, json.dumps(record, indent=2) + "\n")

    def finished(i: int, row: dict[str, Any], done: int) -> None:
        record["trials"][i] = row
        describe({**row, "progress": f"[{done}/{len(arguments)}]"})
        save_record()

    save_record()
    try:
        run_on_ray(
            ray,
            address,
            function,
            arguments,
            failed_row,
            finished,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
        )
    except KeyboardInterrupt:
        record["status"] = "interrupted"
        save_record()
        raise
    record["status"] = "finished"
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    save_record()


def run_on_ray(
    ray: Any,
    address: str | None,
    function: Callable[..., dict[str, Any]],
    arguments: Sequence[tuple],
    failed_row: Callable[[int, BaseException], dict[str, Any]],
    finished: Callable[[int, dict[str, Any], int], None],
    *,
    cpus_per_trial: float,
    gpus_per_trial: float,
) -> None:
    """Start or join Ray, run ``function(*arguments[i])`` for every i as a task, and give each
    finished row to ``finished(i, row, done)``; a task that died (crashed worker,
    ``RayTaskError``, lost object) becomes ``failed_row(i, exc)`` instead of an exception."""
    try:
        if address is None:
            cpus, gpus = _local_resources()
            ray.init(
                num_cpus=cpus,
                num_gpus=gpus,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as exc:
        ray.shutdown()
        raise SweepError(f"cannot start Ray ({address or 'local'}): {_first_line(exc)}") from None
    try:
        task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)(function)
        pending = {task.remote(*args): i for i, args in enumerate(arguments)}
        done = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as exc:
                    cause = getattr(exc, "cause", None)
                    row = failed_row(i, cause if isinstance(cause, BaseException) else exc)
                done += 1
                finished(i, row, done)
    finally:
        ray.shutdown()


def failed_row(env: str, seed: int, run_dir: str | None, exc: BaseException) -> dict[str, Any]:
    return {
        "env": env,
        "seed": seed,
        "run_dir": run_dir,
        "status": "failed",
        "summary": None,
        "error": _first_line(exc),
    }


def _describe(row: dict[str, Any]) -> str:
    where = f"{row.get('progress', '')} {row['env']} s{row['seed']}".strip()
    if row["status"] != "ok":
        return f"{where}: failed: {row['error']}"
    s = row["summary"]
    result = (
        "no evaluation"
        if s.get("eval_return_mean") is None
        else f"eval return {s['eval_return_mean']:.1f} ± {s['eval_return_std']:.1f}"
    )
    return f"{where}: ok, {result} ({s['env_steps']} env steps, {s['wall_seconds']:.0f} s)"


def _write_results(out: Path, record: dict[str, Any], name: str) -> SweepResult:
    from alm_offline.tools.plotting import PAPER_TABLE1

    trials = record["trials"]
    table = results_table(trials, record["envs"], name, PAPER_TABLE1)
    return write_results(out, trials, table, results_csv(trials))


def write_results(
    out: Path, trials: list[dict[str, Any]], table: str, csv_text: str
) -> SweepResult:
    """Write ``results.md`` (``table``), ``results.csv`` and the curves of the trials that
    succeeded (``curves.png``; a plot that fails is a note, never a lost table)."""
    from alm_offline.tools.plotting import plot_learning_curves

    write_text_atomic(out / "results.csv", csv_text)
    write_text_atomic(out / "results.md", table)
    notes: list[str] = []
    curves = None
    ok_dirs = [Path(t["run_dir"]) for t in trials if t["status"] == "ok"]
    if ok_dirs:
        try:
            curves = plot_learning_curves(ok_dirs, out / "curves.png")
        except Exception as exc:  # a plot must not lose the table
            notes.append(f"curves.png not drawn: {_first_line(exc)}")
    else:
        notes.append("curves.png not drawn: no trial succeeded")
    return SweepResult(out=out, trials=trials, table=table, curves=curves, notes=notes)


__all__ = [
    "RAY_MISSING",
    "SweepError",
    "SweepResult",
    "check_address",
    "csv_text",
    "failed_row",
    "import_ray",
    "prepare_out_and_cluster",
    "results_csv",
    "results_table",
    "run_grid",
    "run_on_ray",
    "run_sweep",
    "run_trial",
    "score_cell",
    "trial_configs",
    "write_results",
]
