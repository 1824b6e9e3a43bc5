"""Run directories: where a run writes, and refusing to clobber another run."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from alm_offline.config import (
    MODES,
    ONLINE,
    ConfigError,
    RunConfig,
    RunMode,
    load_config,
    run_seeds,
    to_yaml,
)
from alm_offline.errors import AlmError, WriteError
from alm_offline.runtime.files import write_text_atomic

LOCK_FILE = ".lock"  # held by the run dir's one writer (RunDirLock)
BATCH_FILE = "batch.json"  # a batched run's identity: its seeds' checkpoints name it
RESOURCES_FILE = "resources.json"  # the memory and disk the run was estimated to need
RUN_FILES = (
    "config.yaml",
    BATCH_FILE,
    RESOURCES_FILE,
    "metrics.jsonl",
    "eval.jsonl",
    "summary.json",
    "checkpoints",
    "tensorboard",
    "wandb",
    "wandb_id.txt",
    "analysis",
)


class RunDirError(AlmError):
    """A run directory that cannot be used as asked."""


def default_run_dir(cfg: RunConfig, prefix: str = "") -> Path:
    """``runs/<prefix><env>-s<seeds>-<timestamp>``; without an env (offline data that names
    none), the dataset's name in its place."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    seeds = "-".join(str(seed) for seed in run_seeds(cfg))
    name = cfg.env or Path(cfg.dataset or "no-env").stem
    return Path("runs") / f"{prefix}{name}-s{seeds}-{stamp}"


def holds_run(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_FILES)


class RunDirLock:
    """The one writer of a run dir: an exclusive ``flock`` on ``RUN_DIR/.lock``.

    The OS releases it when the process dies, so a killed run never leaves a stale lock;
    a second process that asks for it gets a ``RunDirError`` naming the holder's PID.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"run dir '{self.path}' exists and is not a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WriteError.of(self.path, exc, "run dir") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            self.release()
            raise RunDirError(
                f"run dir '{self.path}' is in use by another process (pid {holder})"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Let another process write here (closing the file drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def prepare_new(path: Path, cfg: RunConfig, overwrite: bool) -> Path:
    """Create ``path`` for a new run (its lock held by the caller); refuse one that holds
    a run unless ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"run dir '{path}' exists and is not a directory")
    if holds_run(path):
        if not overwrite:
            raise RunDirError(
                f"run dir '{path}' already holds a run; use --resume to continue it "
                "or --overwrite to replace it"
            )
        try:
            for name in RUN_FILES:
                target = path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        except OSError as exc:
            raise WriteError.of(path, exc, "run dir") from None
    try:  # a batched run's checkpoints are its seeds'
        (path if cfg.seeds else path / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError.of(path, exc, "run dir") from None
    write_text_atomic(path / "config.yaml", to_yaml(cfg))
    if cfg.seeds:  # a batched run: its identity, and each seed's own run dir below it
        identity = {"id": uuid.uuid4().hex, "seeds": list(cfg.seeds)}
        write_text_atomic(path / BATCH_FILE, json.dumps(identity) + "\n")
        for seed_dir, seed_cfg in seed_run_dirs(path, cfg):
            prepare_new(seed_dir, seed_cfg, overwrite)
    return path


def batch_identity(path: Path) -> dict | None:
    """A batched run's ``batch.json``: None when there is none (a run made before batches
    had one); ``RunDirError`` when it is there but cannot be read, so that a resume never
    goes on without the identity it checks its seeds against."""
    file = Path(path) / BATCH_FILE
    if not file.exists():
        return None
    try:
        identity = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise RunDirError(f"the batch's identity '{file}' cannot be read ({exc})") from None
    if not isinstance(identity, dict) or "id" not in identity:
        raise RunDirError(f"the batch's identity '{file}' is damaged (no id)")
    return identity


def batch_of_seed_dir(path: Path) -> tuple[Path, int] | None:
    """(the batched run, the seed) when ``path``, links resolved, is a seed dir
    ``RUN/s<SEED>`` of a batched run: its parent has a ``batch.json`` (readable or not) or
    a config whose seeds hold SEED; None otherwise."""
    path = Path(path).resolve()
    name = path.name
    if not (name.startswith("s") and name[1:].isdigit() and name == f"s{int(name[1:])}"):
        return None
    seed = int(name[1:])
    if (path.parent / BATCH_FILE).exists():
        return path.parent, seed
    try:
        cfg = load_config(str(path.parent / "config.yaml"))
    except (ConfigError, OSError):
        return None
    return (path.parent, seed) if seed in cfg.seeds else None


def refuse_seed_dir(path: Path, mode: str) -> None:
    """``RunDirError`` when ``path`` is a seed dir of a batched run: a seed dir is never a
    run dir of its own, new or resumed; its seeds resume together from the batch's."""
    batch = batch_of_seed_dir(path)
    if batch is not None:
        parent, seed = batch
        raise RunDirError(
            f"'{path}' is seed {seed} of the batched run '{parent}', whose seeds resume "
            f"together: alm train-{mode} --resume {parent}"
        )


def batch_seed_dirs(path: Path) -> list[Path]:
    """The seed run dirs ``RUN/s<SEED>`` of a batched run dir, in its config's seed order;
    [] for any other folder (no config.yaml, an unreadable one, or one seed)."""
    try:
        cfg = load_config(str(Path(path) / "config.yaml"))
    except (ConfigError, OSError):
        return []
    return [run_dir for run_dir, _ in seed_run_dirs(Path(path), cfg)] if cfg.seeds else []


def seed_run_dirs(run_dir: Path, cfg: RunConfig) -> list[tuple[Path, RunConfig]]:
    """(run dir, config) of each seed of a run: ``RUN/s<SEED>`` with ``seed=SEED`` for a
    batched run (``seeds=...``), each an ordinary one-seed run dir; the run itself for one
    ``seed``."""
    if not cfg.seeds:
        return [(Path(run_dir), cfg)]
    return [
        (
            Path(run_dir) / f"s{seed}",
            replace(cfg, seed=seed, seeds=[], run_dir=str(Path(run_dir) / f"s{seed}")),
        )
        for seed in run_seeds(cfg)
    ]


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    write_text_atomic(path / "summary.json", json.dumps(summary, indent=2) + "\n")


def read_summary(path: Path) -> dict[str, Any]:
    """A run dir's ``summary.json``; ``{}`` when the run has not finished or it is unreadable."""
    try:
        summary = json.loads((Path(path) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """One character per value, ``▁`` (lowest) to ``█`` (highest)."""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[round((v - low) / span * (len(SPARK) - 1))] for v in values)


def summary_mode(summary: dict[str, Any]) -> RunMode:
    """The ``RunMode`` of a run's summary (summaries without one are online runs')."""
    return MODES.get(summary.get("mode"), ONLINE)


def describe_summary(summary: dict[str, Any]) -> str:
    """The end of a training run: its result, the evaluation curve at a glance with the best
    checkpoint, the run dir, and the commands to try next."""
    if "runs" in summary:
        return describe_batch_summary(summary)
    mean, std = summary.get("eval_return_mean"), summary.get("eval_return_std")
    result = "no evaluation" if mean is None else f"eval return {mean:.1f} +- {std:.1f}"
    if summary.get("normalized_score_mean") is not None:
        result += f" (normalised score {summary['normalized_score_mean']:.1f})"
    where = summary_mode(summary).where_of(summary)
    run_dir = summary["run_dir"]
    lines = [
        f"{summary['env'] or 'no env'}: {result} after {summary['updates']} updates {where} "
        f"in {summary['wall_seconds']:.0f} s"
    ]
    curve = summary.get("evaluations") or []
    if curve:
        returns = [value for _, value in curve]
        unit = "updates" if summary.get("step_key") == "updates" else "env steps"
        lines.append(
            f"evaluations {sparkline(returns)} at {', '.join(f'{at:g}' for at, _ in curve)} "
            f"{unit}: {returns[0]:.1f} -> {returns[-1]:.1f}; best "
            f"{summary['best_eval_return_mean']:.1f} (at {summary['best_eval_at']}"
            + (
                f", checkpoints/{Path(best).name})"
                if (best := summary.get("best_checkpoint"))
                else ")"
            )
        )
    if summary.get("compile_seconds") is not None:
        lines.append(
            f"fused update: compiled in {summary['compile_seconds']:.0f} s "
            f"(Inductor cache {summary['compile_cache']})"
        )
    lines.append(f"run dir: {run_dir}")
    if not summary.get("env"):
        lines.append(f"next: alm eval {run_dir} --env ENV_ID   (an env of the dataset's dims)")
        return "\n".join(lines)
    plot = f"alm plot {run_dir} --out {run_dir}/curves.png"
    lines.append(
        f"next: alm eval {run_dir} --video {run_dir}/eval.mp4   "
        f"(add --best for the best checkpoint)\n      {plot}"
    )
    return "\n".join(lines)


def describe_batch_summary(summary: dict[str, Any]) -> str:
    """The end of a batched run: each seed's last and best evaluation, their mean and std
    over seeds, the run dirs and the commands to try next."""
    where = summary_mode(summary).where_of(summary)
    seeds = summary["seeds"]
    lines = [
        f"{summary['env'] or 'no env'}: {len(seeds)} seeds in one process, "
        f"{summary['updates']} updates each {where} in {summary['wall_seconds']:.0f} s"
    ]
    last, best = summary["eval_return_mean_seeds"], summary["best_eval_return_mean_seeds"]
    for seed, last_mean, best_mean in zip(seeds, last, best, strict=True):
        if last_mean is None:
            lines.append(f"  seed {seed}: no evaluation")
        else:
            lines.append(f"  seed {seed}: eval return {last_mean:.1f} (best {best_mean:.1f})")
    if summary.get("eval_return_mean_over_seeds") is not None:
        lines.append(
            f"mean over seeds: eval return {summary['eval_return_mean_over_seeds']:.1f} +- "
            f"{summary['eval_return_mean_std_over_seeds']:.1f}, best "
            f"{summary['best_eval_return_mean_over_seeds']:.1f} +- "
            f"{summary['best_eval_return_mean_std_over_seeds']:.1f}"
        )
    run_dir = summary["run_dir"]
    lines.append(f"run dir: {run_dir} (one run dir per seed: {run_dir}/s<SEED>)")
    lines.append(
        f"next: alm eval {run_dir}/s{seeds[0]} --best\n      "
        f"alm plot {run_dir} --out {run_dir}/curves.png"
    )
    return "\n".join(lines)
