"""Run directories: where a run writes, and refusing to clobber another run."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .config import RunConfig, to_yaml
from .errors import AlmError

RUN_FILES = (
    "config.yaml",
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
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{prefix}{cfg.env}-s{cfg.seed}-{stamp}"


def holds_run(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_FILES)


def prepare_new(path: Path, cfg: RunConfig, overwrite: bool) -> Path:
    """Create ``path`` for a new run; refuse one that holds a run unless ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"run dir '{path}' exists and is not a directory")
    if holds_run(path):
        if not overwrite:
            raise RunDirError(
                f"run dir '{path}' already holds a run; use --resume to continue it "
                "or --overwrite to replace it"
            )
        for name in RUN_FILES:
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create run dir '{path}': {exc.strerror}") from None
    write_text_atomic(path / "config.yaml", to_yaml(cfg))
    return path


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    write_text_atomic(path / "summary.json", json.dumps(summary, indent=2) + "\n")


def read_summary(path: Path) -> dict[str, Any]:
    """A run dir's ``summary.json``; ``{}`` when the run has not finished or it is unreadable."""
    try:
        summary = json.loads((Path(path) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def describe_summary(summary: dict[str, Any]) -> str:
    """Two lines for the end of a training run: its result, and where its run dir is."""
    mean, std = summary.get("eval_return_mean"), summary.get("eval_return_std")
    result = "no evaluation" if mean is None else f"eval return {mean:.1f} +- {std:.1f}"
    if summary.get("normalized_score_mean") is not None:
        result += f" (normalised score {summary['normalized_score_mean']:.1f})"
    if summary.get("mode") == "offline":
        where = f"on {summary['dataset']}"
    else:
        where = f"({summary['env_steps']} env steps)"
    return (
        f"{summary['env']}: {result} after {summary['updates']} updates {where} "
        f"in {summary['wall_seconds']:.0f} s\nrun dir: {summary['run_dir']}"
    )
