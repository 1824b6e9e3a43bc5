"""Run-directory logging: JSONL files that are always written, plus TensorBoard and W&B."""

from __future__ import annotations

import importlib.util
import json
import math
import numbers
import os
import secrets
from pathlib import Path
from typing import Any

from alm_offline.config import LoggerConfig, RunConfig, to_dict
from alm_offline.errors import AlmError, WriteError, first_line
from alm_offline.runtime.files import write_text_atomic
from alm_offline.training.rundir import RunDirError


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class JsonlLogger:
    """Appends rows to ``metrics.jsonl`` and ``eval.jsonl`` in a run directory."""

    files = ("metrics.jsonl", "eval.jsonl")

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def _append(self, name: str, row: dict[str, Any]) -> None:
        path = self.run_dir / name
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        except OSError as exc:
            raise WriteError.of(path, exc) from None

    def metrics(self, row: dict[str, Any]) -> None:
        self._append("metrics.jsonl", row)

    def evaluation(self, row: dict[str, Any]) -> None:
        self._append("eval.jsonl", row)

    def truncate_after(self, key: str, value: int) -> None:
        """Drop rows whose ``key`` is beyond ``value`` (rows a resumed run will write again),
        and a final line cut off by a kill or a full disk."""
        for name in self.files:
            path = self.run_dir / name
            if path.exists():
                kept = [row for row in read_jsonl(path) if row.get(key, 0) <= value]
                write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in kept))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All rows of a JSONL file; a final line that is not a whole row (the process writing
    it was killed, or the disk filled) is dropped, a bad line anywhere else is an error."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise RunDirError(f"{path} line {number} is not a JSON row") from None
        if not isinstance(row, dict):
            raise RunDirError(f"{path} line {number} is not a JSON object")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- backends
STEP_KEYS = ("env_step", "updates")
EVAL_KEYS = ("return_mean", "return_std", "return_min", "return_max", "normalized_score_mean")
WANDB_ID_FILE = "wandb_id.txt"


class LoggerError(AlmError):
    """A logging backend that was asked for but cannot be used."""


WANDB_LOCAL_MODES = ("offline", "disabled", "dryrun")  # WANDB_MODE values with no login


def check_backends(logger_cfg: LoggerConfig) -> None:
    """Raise ``LoggerError`` if an enabled backend's package is not installed, or W&B (not
    in a local ``WANDB_MODE``) has no login: before any run dir is written."""
    if logger_cfg.wandb and importlib.util.find_spec("wandb") is None:
        raise LoggerError(
            "logger.wandb=true needs the wandb package: pip install 'alm-offline[wandb]'"
        )
    if logger_cfg.wandb and os.environ.get("WANDB_MODE", "").lower() not in WANDB_LOCAL_MODES:
        _check_wandb_login()
    if logger_cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise LoggerError(
            "logger.tensorboard=true needs the tensorboard package: pip install tensorboard"
        )


def _check_wandb_login() -> None:
    """W&B's own lookup of the API key (env, netrc; a prompt at a terminal), no network."""
    import wandb

    try:
        wandb.login(relogin=False, verify=False)
    except wandb.errors.Error as exc:
        raise LoggerError(
            f"logger.wandb=true: {first_line(exc)} (or set WANDB_MODE=offline to log locally)"
        ) from None


def _step(row: dict[str, Any]) -> int:
    """The x-axis of a row: env steps online, updates offline."""
    return int(row["env_step"] if "env_step" in row else row["updates"])


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    """The numeric values of a metrics row, less its step keys."""
    return {
        key: float(value)
        for key, value in row.items()
        if key not in STEP_KEYS and isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


def _eval_scalars(row: dict[str, Any]) -> dict[str, float]:
    """``eval/<key>`` for the summary statistics of an evaluation row."""
    return {f"eval/{key}": float(row[key]) for key in EVAL_KEYS if row.get(key) is not None}


class TensorBoardLogger:
    """Scalars of metrics and evaluation rows as TensorBoard events in ``run_dir/tensorboard``.

    ``purge_step``: on resume, events at this step or later left by the interrupted run are
    hidden by TensorBoard (the resumed run writes them again).
    """

    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

    def _write(self, scalars: dict[str, float], step: int) -> None:
        for key, value in scalars.items():
            self._writer.add_scalar(key, value, step)

    def metrics(self, row: dict[str, Any]) -> None:
        self._write(_scalars(row), _step(row))

    def evaluation(self, row: dict[str, Any]) -> None:
        self._write(_eval_scalars(row), _step(row))

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


def wandb_run_id(run_dir: Path) -> str:
    """The run's Weights & Biases id, made once and kept in ``run_dir/wandb_id.txt``."""
    path = Path(run_dir) / WANDB_ID_FILE
    if path.is_file() and path.read_text(encoding="utf-8").strip():
        return path.read_text(encoding="utf-8").strip()
    run_id = secrets.token_hex(8)
    write_text_atomic(path, run_id + "\n")
    return run_id


class WandbLogger:
    """Metrics and evaluation rows sent to Weights & Biases; a resumed run continues its run."""

    def __init__(self, run_dir: Path, project: str, config: dict[str, Any]) -> None:
        import wandb

        run_dir = Path(run_dir)
        self._wandb = wandb
        try:
            self._run = wandb.init(
                project=project,
                dir=str(run_dir),
                config=config,
                name=run_dir.name,
                resume="allow",
                id=wandb_run_id(run_dir),
            )
        except wandb.errors.Error as exc:  # a login, network or server refusal
            raise LoggerError(f"W&B could not start a run: {first_line(exc)}") from None

    def metrics(self, row: dict[str, Any]) -> None:
        self._run.log(_scalars(row), step=_step(row))

    def evaluation(self, row: dict[str, Any]) -> None:
        self._run.log(_eval_scalars(row), step=_step(row))

    def close(self) -> None:
        self._run.finish()


class RunLogger:
    """The run's JSONL files plus the enabled backends; a context manager that closes them."""

    def __init__(self, jsonl: JsonlLogger, backends: list[TensorBoardLogger | WandbLogger]):
        self.jsonl = jsonl
        self.backends = backends

    def metrics(self, row: dict[str, Any]) -> None:
        self.jsonl.metrics(row)
        for backend in self.backends:
            backend.metrics(row)

    def evaluation(self, row: dict[str, Any]) -> None:
        self.jsonl.evaluation(row)
        for backend in self.backends:
            backend.evaluation(row)

    def truncate_after(self, key: str, value: int) -> None:
        """Drop JSONL rows beyond ``value`` (TensorBoard's purge step hides its own)."""
        self.jsonl.truncate_after(key, value)

    def close(self) -> None:
        """Flush and close every backend (safe to call twice)."""
        backends, self.backends = self.backends, []
        for backend in backends:
            backend.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_run_logger(cfg: RunConfig, run_dir: Path, resume_step: int | None = None) -> RunLogger:
    """The logger of a run: JSONL always, TensorBoard / W&B as ``cfg.logger`` asks.

    ``resume_step``: the step of the checkpoint a resumed run continues from (env steps
    online, updates offline); TensorBoard events after it are purged, as JSONL rows are by
    ``truncate_after``. Raises ``LoggerError`` if a backend's package is missing.
    """
    check_backends(cfg.logger)
    run_dir = Path(run_dir)
    backends: list[TensorBoardLogger | WandbLogger] = []
    if cfg.logger.tensorboard:
        purge_step = None if resume_step is None else resume_step + 1
        backends.append(TensorBoardLogger(run_dir, purge_step=purge_step))
    if cfg.logger.wandb:
        backends.append(WandbLogger(run_dir, cfg.logger.wandb_project, to_dict(cfg)))
    return RunLogger(JsonlLogger(run_dir), backends)
