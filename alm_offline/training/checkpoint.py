"""Atomic save and load of everything an exact resume needs, in one place.

A checkpoint holds: the config, the agent (networks, targets, optimisers), the replay
(online runs; offline runs rebuild theirs from the dataset), the trainer's counters, and
every RNG state (torch CPU and CUDA, the trainer's numpy generator, the training env's reset
generator). It is written to a temporary file beside the destination and renamed over it,
so a run killed at any moment leaves the previous checkpoint loadable. Files load with
``torch.load(weights_only=True)``: only tensors and plain Python values are stored.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm_offline.config import ConfigError, RunConfig, config_from_dict, resolve_device, to_dict
from alm_offline.core.agent import AlmAgent, stack_seed_states
from alm_offline.core.replay import ReplayBuffer
from alm_offline.errors import AlmError, WriteError, first_line
from alm_offline.runtime.files import (
    replaced_on_success,
    write_text_atomic,
)
from alm_offline.training.rundir import batch_seed_dirs

FORMAT_VERSION = 2  # 2: weights stacked over seeds (S, ...); env state as an episode tape
LATEST = "latest.pt"
PENDING = ".latest.pt.pending"  # a batch's seed checkpoint written, not yet committed
COMMIT = ".checkpoint-commit"  # in a batch's run dir: its pending checkpoints are complete
BEST = "best.pt"  # the best-evaluated agent so far (no replay: for eval, not for resume)
CHECKPOINTS = {"latest": LATEST, "best": BEST}


class CheckpointError(AlmError):
    """A checkpoint that is missing, corrupt, or does not match the run."""


def checkpoint_path(run_dir: str | Path, which: str = "latest") -> Path:
    """``RUN_DIR/checkpoints/latest.pt`` (what a resume continues from) or ``best.pt``."""
    return Path(run_dir) / "checkpoints" / CHECKPOINTS[which]


class _ReportingWriter:
    """The file ``torch.save`` writes through, keeping the ``OSError`` that stopped it
    (torch reports a failed write as an opaque ``RuntimeError``)."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        try:
            while view:
                view = view[self.file.write(view) :]
        except OSError as exc:
            self.error = exc
            raise
        return len(data)

    def flush(self) -> None:
        self.file.flush()


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through ``.NAME.tmp-PID`` and ``os.replace``; a write that
    fails (full disk, read-only folder) is a ``WriteError`` naming the path and the cause."""
    writer = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_on_success(path) as tmp, open(tmp, "wb", buffering=0) as file:
            writer = _ReportingWriter(file)
            torch.save(obj, writer)
            os.fsync(file.fileno())
    except (OSError, RuntimeError) as exc:
        cause = writer.error if writer is not None and writer.error is not None else exc
        if isinstance(exc, RuntimeError) and cause is exc:
            raise
        raise WriteError.of(path, cause, "checkpoint") from None


def save_checkpoint(
    path: Path,
    *,
    cfg: RunConfig,
    agent_state: dict[str, Any],
    dims: tuple[int, int],
    counters: dict[str, Any],
    np_rng: np.random.Generator,
    replay: ReplayBuffer | None = None,
    env_rng: dict | None = None,
    extra: dict[str, Any] | None = None,
    batch: dict[str, Any] | None = None,
) -> None:
    """Write one seed's resumable checkpoint atomically: ``agent_state`` is a one-seed
    agent state (``agent.seed_state``), ``env_rng`` the training env's episode tape,
    ``batch`` the batched run's identity (``batch.json``) when the seed is one of several."""
    state = {
        "format_version": FORMAT_VERSION,
        "config": to_dict(cfg),
        "dims": {"obs": dims[0], "action": dims[1]},
        "agent": agent_state,
        "counters": dict(counters),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np_rng.bit_generator.state,
            "env": env_rng,
        },
        "replay": replay.state_dict() if replay is not None else None,
        "extra": extra or {},
        "batch": batch,
    }
    atomic_torch_save(own_storage(state), path)


def pending_path(seed_dir: Path) -> Path:
    """Where a batch's seed checkpoint waits for the batch's commit (``commit_batch``)."""
    return checkpoint_path(seed_dir).with_name(PENDING)


def commit_batch(run_dir: Path, seed_dirs: list[Path]) -> None:
    """Make every seed's pending checkpoint its ``latest.pt``, as one unit: the commit
    marker first (from then on a resume rolls forward), the renames, the marker's removal."""
    write_text_atomic(Path(run_dir) / COMMIT, "")
    settle_batch(run_dir, seed_dirs)


def settle_batch(run_dir: Path, seed_dirs: list[Path]) -> None:
    """A batch's checkpoints as one unit again after a save stopped anywhere: with the
    commit marker every pending checkpoint becomes its seed's ``latest.pt`` (all were
    written); without it the pending ones are dropped, and every seed keeps the ``latest.pt``
    of the last committed save."""
    marker = Path(run_dir) / COMMIT
    forward = marker.is_file()
    try:
        for seed_dir in seed_dirs:
            pending = pending_path(seed_dir)
            if pending.is_file() and forward:
                os.replace(pending, checkpoint_path(seed_dir))
            else:
                pending.unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
    except OSError as exc:
        raise WriteError.of(marker, exc, "checkpoint") from None


def check_batch(states: list[dict[str, Any]], seeds: list[int], identity: dict | None) -> None:
    """``CheckpointError`` naming the first seed whose checkpoint is not this batch's: from
    another batched run (``identity``: its ``batch.json``; checkpoints from before batches
    recorded one are not checked), or at another step than the first seed's."""
    first = states[0]["counters"]
    if identity is None and any(state.get("batch") is not None for state in states):
        raise CheckpointError(
            "the batch's identity (batch.json) is gone while its seeds' checkpoints name one: "
            "the seed dirs cannot be checked against it"
        )
    for seed, state in zip(seeds, states, strict=True):
        recorded = state.get("batch")
        if identity is not None and recorded is not None and recorded != identity:
            raise CheckpointError(
                f"seed {seed}'s checkpoint belongs to another batched run "
                f"(seeds {','.join(map(str, recorded.get('seeds', [])))}): its seed dir was "
                "not made by this run"
            )
        counters = state["counters"]
        for key in ("env_steps", "updates"):
            if counters.get(key) != first.get(key):
                raise CheckpointError(
                    f"seed {seed}'s checkpoint is at {counters.get(key)} {key}, seed "
                    f"{seeds[0]}'s at {first.get(key)}: the seed dirs are not one batch's save"
                )


def own_storage(value: Any) -> Any:
    """``value`` with every tensor that views a larger storage (a slice of a stacked or
    preallocated one) replaced by a compact copy: ``torch.save`` writes a tensor's whole
    storage, so each seed's checkpoint would carry every seed's data. Dicts, lists and
    tuples are walked; other values are returned as they are."""
    if isinstance(value, torch.Tensor):
        if value.untyped_storage().nbytes() > value.numel() * value.element_size():
            return value.clone(memory_format=torch.contiguous_format)
        return value
    if isinstance(value, dict):
        return {key: own_storage(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(own_storage(item) for item in value)
    return value


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file to CPU tensors; one-line ``CheckpointError`` when unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    damaged = _damaged_member(path)
    if damaged is not None:
        raise CheckpointError(f"checkpoint '{path}' is corrupt ({damaged})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt or unreadable ({type(exc).__name__})"
        ) from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"'{path}' is not an alm-offline checkpoint (format {FORMAT_VERSION})"
        )
    return state


def read_resume_checkpoint(run_dir: Path, cfg: RunConfig) -> dict[str, Any]:
    """The latest checkpoint of ``run_dir``, checked against ``cfg`` (``steps`` may differ)."""
    state = read_checkpoint(checkpoint_path(run_dir))
    saved, wanted = to_dict(checkpoint_config(state)), to_dict(cfg)
    saved.pop("steps"), wanted.pop("steps")
    if saved != wanted:
        diff = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise CheckpointError(
            f"checkpoint in '{run_dir}' was made with another config ({', '.join(diff)})"
        )
    return state


def _damaged_member(path: Path) -> str | None:
    """What fails the archive's own checks (every member's CRC-32), or None when intact.
    ``torch.load`` does not check CRCs, so a flipped byte would otherwise load silently."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f"not a readable archive: {type(exc).__name__}"
    return None if bad is None else f"CRC mismatch in {bad}"


def checkpoint_config(state: dict[str, Any]) -> RunConfig:
    try:
        return config_from_dict(state["config"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint config is unusable: {exc}") from None


def check_dims(state: dict[str, Any], agent: AlmAgent) -> None:
    """``CheckpointError`` unless the checkpoint's obs/action dims are the agent's."""
    dims = state["dims"]
    if (dims["obs"], dims["action"]) != (agent.obs_dim, agent.action_dim):
        raise CheckpointError(
            f"checkpoint is for obs/action dims {dims['obs']}/{dims['action']}, "
            f"the run has {agent.obs_dim}/{agent.action_dim}"
        )


def restore_seeds(
    states: list[dict[str, Any]],
    *,
    agent: AlmAgent,
    np_rngs: list[np.random.Generator],
    replays: list[ReplayBuffer] | None = None,
) -> list[dict[str, Any]]:
    """Load every seed's ``read_checkpoint`` output (in the agent's seed order) into the
    agent, the replays and the numpy generators, and torch's RNG from the first (all
    seeds of a run save the same); returns each seed's counters."""
    for state in states:
        check_dims(state, agent)
    try:
        agent.load_state_dict(stack_seed_states([state["agent"] for state in states]))
        for replay, state in zip(replays or [], states, strict=False):
            replay.load_state_dict(state["replay"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint does not match the run: {first_line(exc)}") from None
    first = states[0]["rng"]
    torch.set_rng_state(first["torch"])
    if first["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(first["cuda"])
    for np_rng, state in zip(np_rngs, states, strict=True):
        np_rng.bit_generator.state = state["rng"]["numpy"]
    return [state["counters"] for state in states]


def resolve_checkpoint(source: str | Path, which: str = "latest") -> tuple[Path, Path]:
    """(checkpoint file, run dir) of a run dir (its ``which`` checkpoint: latest or best)
    or of a checkpoint file inside one.

    A run dir without that checkpoint yet is a ``CheckpointError``.
    """
    source = Path(source)
    if source.is_dir():
        seed_dirs = batch_seed_dirs(source)
        if seed_dirs:
            raise CheckpointError(
                f"'{source}' is a batched run of {len(seed_dirs)} seeds: give one seed's run "
                f"dir, e.g. {seed_dirs[0]}"
            )
        path = checkpoint_path(source, which)
        if not path.is_file():
            kind = "" if which == "latest" else f"{which} "
            raise CheckpointError(f"run dir '{source}' has no {kind}checkpoint yet")
        return path, source
    return source, source.parent.parent


def load_agent(
    path: str | Path, device: str = "cpu", which: str = "latest"
) -> tuple[AlmAgent, RunConfig, dict[str, Any]]:
    """The agent of a checkpoint (or of a run dir's ``which`` checkpoint), its config, state."""
    path, _ = resolve_checkpoint(path, which)
    state = read_checkpoint(path)
    cfg = checkpoint_config(state)
    agent = AlmAgent(
        state["dims"]["obs"], state["dims"]["action"], cfg.agent, resolve_device(device)
    )
    try:
        agent.load_state_dict(state["agent"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint '{path}' is damaged: {first_line(exc)}") from None
    return agent, cfg, state


def checkpoint_policy(path: str | Path, env: Any) -> tuple[Any, str]:
    """The deterministic policy of the ALM checkpoint at ``path`` (obs (D,) -> action (A,)
    in [-1, 1]), for ``env`` (an ``EnvSpec``) whose sizes it must have, and its name for a
    dataset's metadata; ``DatasetError`` (one line) otherwise."""
    from alm_offline.datasets.episodes import DatasetError

    if not Path(path).exists():
        raise DatasetError(f"--policy must be 'random' or a checkpoint path; {path} does not exist")
    agent, cfg, _ = load_agent(str(path), device="cpu")
    if (agent.obs_dim, agent.action_dim) != (env.obs_dim, env.action_dim):
        raise DatasetError(
            f"checkpoint {path} was trained on {cfg.env} (obs/action dims {agent.obs_dim}/"
            f"{agent.action_dim}); {env.env_id} has {env.obs_dim}/{env.action_dim}"
        )
    return (lambda obs: agent.act(obs, 0.0, deterministic=True)), f"alm ({path})"
