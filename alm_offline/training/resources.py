"""What a run will need in memory and on disk, estimated from its config before anything is
written, and refused in one line when the machine has not that much free.

Memory (peak RSS): this process as it is now (Python, torch, gymnasium, MuJoCo imported),
plus a fixed ``FIRST_UPDATE_BYTES`` (the kernels' first use), plus per seed: its replay
(online; offline runs share the dataset's once), its agent (weights, targets, gradients and
Adam's two moments), its two envs, and the update's working memory per sample
(``ACTIVATION_FLOATS``). The constants were measured at issue 41 (AMD EPYC): whole quick
runs at 1, 5 and 20 seeds, one update at the paper's sizes (``tests/test_resources.py``
checks the estimate against a real run's peak RSS within 25%).

Disk: what each seed's run dir holds at the end: ``latest.pt`` (its agent state and the
replay rows it filled), ``best.pt`` (the agent state, Adam's moments included) and its
logs; a batch's save keeps a second ``latest.pt`` aside while it commits, which the
free-disk check adds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from alm_offline.config import AgentConfig, RunConfig, run_seeds
from alm_offline.errors import AlmError

MIB = 2**20
FIRST_UPDATE_BYTES = 40 * MIB  # the first update's kernels and allocator pools, once
# the update's working memory per sample and step of the sequence, in floats: a part that
# does not grow with the widths and one that does (per unit of hidden + model width);
# fitted to one update's peak RSS at the quick (128/256) and paper (512/1024) sizes
ACTIVATION_FLOATS = 18000
ACTIVATION_FLOATS_PER_WIDTH = 0.7
ENV_BYTES = 1 * MIB  # one MuJoCo env (a seed has a training and an evaluation env)
SEED_OVERHEAD_BYTES = 8 * MIB  # a seed's evaluation, logger and Python objects
LOG_BYTES_PER_ROW = 600  # one metrics.jsonl or eval.jsonl row
INDEX_BYTES = 16  # a replay slot's two index-set entries (int64 each)


class ResourceError(AlmError):
    """A run the machine has not the memory or disk for (one line: estimate and free)."""


@dataclass(frozen=True)
class ResourceEstimate:
    """Peak memory and final run-dir disk of a run, in bytes, with their parts."""

    memory: int
    disk: int
    seeds: int
    per_seed_memory: int
    per_seed_disk: int

    def as_dict(self) -> dict[str, int]:
        return {
            "memory_bytes": self.memory,
            "disk_bytes": self.disk,
            "seeds": self.seeds,
            "per_seed_memory_bytes": self.per_seed_memory,
            "per_seed_disk_bytes": self.per_seed_disk,
        }


def _proc_kib(path: str, field: str) -> int | None:
    """``field``'s value (kB) in a /proc file such as /proc/meminfo, in bytes; None if absent."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss() -> int:
    """This process's resident memory now (bytes; 0 where /proc is missing)."""
    return _proc_kib("/proc/self/status", "VmRSS") or 0


def peak_rss() -> int | None:
    """This process's peak resident memory since its exec (``VmHWM``, bytes): unlike
    ``ru_maxrss``, it does not start from the RSS of the process that started this one."""
    return _proc_kib("/proc/self/status", "VmHWM")


def available_memory() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (None where it cannot be read)."""
    return _proc_kib("/proc/meminfo", "MemAvailable")


def agent_parameters(obs_dim: int, action_dim: int, agent: AgentConfig) -> tuple[int, int]:
    """(trainable, target) parameter counts of one seed's agent, counted on the meta device
    (nothing allocated)."""
    import torch

    from alm_offline.core.agent import AlmAgent

    with torch.device("meta"):
        built = AlmAgent(obs_dim, action_dim, agent, "meta", fused=False)
    trainable = sum(p.numel() for p in built.wm.parameters() if p.requires_grad)
    total = sum(t.numel() for t in built.wm.state_dict().values())
    return trainable, total - trainable


def estimate_run(
    cfg: RunConfig,
    obs_dim: int,
    action_dim: int,
    *,
    online: bool,
    dataset_rows: int = 0,
    base: int | None = None,
) -> ResourceEstimate:
    """The run's peak memory and final disk (module doc). ``base`` is the memory already
    in use (default: this process's RSS now); ``dataset_rows`` an offline run's data."""
    a = cfg.agent
    seeds = len(run_seeds(cfg))
    trainable, targets = agent_parameters(obs_dim, action_dim, a)
    row = 4 * (obs_dim + action_dim + 2) + INDEX_BYTES + 1
    replay_rows = a.buffer_size if online else 0
    agent_memory = 4 * (4 * trainable + targets)  # weights, grads, 2 Adam moments; targets
    width = a.hidden_dim + a.model_hidden_dim
    per_sample = ACTIVATION_FLOATS + ACTIVATION_FLOATS_PER_WIDTH * width
    activations = 4 * per_sample * a.batch_size * (a.seq_len + 1)
    per_seed_memory = (
        replay_rows * row + agent_memory + 2 * ENV_BYTES + activations + SEED_OVERHEAD_BYTES
    )
    shared = FIRST_UPDATE_BYTES + dataset_rows * row
    memory = (current_rss() if base is None else base) + shared + seeds * per_seed_memory
    state = 4 * (3 * trainable + targets)  # weights and targets, Adam's two moments
    filled = min(a.buffer_size, cfg.steps) if online else 0
    log_rows = cfg.steps // max(cfg.log_every, 1) + (
        cfg.steps // cfg.eval.every if cfg.eval.every else 0
    )
    per_seed_disk = 2 * state + filled * (row - 1) + log_rows * LOG_BYTES_PER_ROW
    return ResourceEstimate(
        memory=int(memory),
        disk=int(seeds * per_seed_disk),
        seeds=seeds,
        per_seed_memory=int(per_seed_memory),
        per_seed_disk=int(per_seed_disk),
    )


def _gib(value: int) -> str:
    return f"{value / 2**30:.1f} GiB" if value >= 2**30 else f"{value / MIB:.0f} MiB"


def check_resources(estimate: ResourceEstimate, where: Path, what: str) -> None:
    """``ResourceError`` (one line) when the estimate exceeds the free memory, or the disk
    free at ``where`` (its nearest existing folder) with a save's second ``latest.pt``."""
    free_memory = available_memory()
    if free_memory is not None and estimate.memory > free_memory:
        raise ResourceError(
            f"{what} needs about {_gib(estimate.memory)} of memory "
            f"({_gib(estimate.per_seed_memory)} a seed), {_gib(free_memory)} is free"
        )
    folder = Path(where).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free_disk = shutil.disk_usage(folder).free
    if 2 * estimate.disk > free_disk:
        raise ResourceError(
            f"{what} needs about {_gib(estimate.disk)} of disk for its run dirs "
            f"({_gib(estimate.per_seed_disk)} a seed, twice that while a checkpoint is "
            f"saved), {_gib(free_disk)} is free at '{folder}'"
        )
