"""``alm bench --seeds 1,2,5,10``: what training N seeds in one process buys, measured here.

For each N, in one process and one run: a new N-seed agent on the same replay of real
environment transitions (every seed sampling its own batches), its update rate (median over
timed windows, after warm-up), ``seed_updates_per_sec`` = N x updates/s, the online loop's
``seed_env_steps_per_sec`` (N envs: one batched act, N env steps and stores, one batched
update per step), and the process's peak host RSS after it (and, on CUDA, the peak device
memory of that N alone). ``speedup`` is seed-updates/s over N = 1's, so the ratios compare
the same update path (eager with eager, fused with ``agent.compile=on``) on the same
machine in the same minute.
"""

from __future__ import annotations

import resource
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from alm_offline.config import RunConfig, resolve_device
from alm_offline.core.agent import AlmAgent
from alm_offline.core.replay import ReplayBuffer, SeedReplay
from alm_offline.core.updater import make_updater
from alm_offline.runtime.envs import SeedEnvs, describe_env, make_env
from alm_offline.tools.update_speed import (
    fill_with_env,
    machine_fields,
    rate,
    step_seeds,
    synchronize,
)
from alm_offline.training.resources import check_resources, estimate_run
from alm_offline.training.threads import ThreadPolicy


@dataclass
class SeedRow:
    """One N of the table."""

    seeds: int
    updates_per_sec: float
    seed_updates_per_sec: float
    speedup: float  # seed-updates/s over the N = 1 row's (1.0 without one)
    seed_env_steps_per_sec: float
    peak_rss_mib: float
    cuda_max_allocated_mib: float | None


@dataclass
class SeedBenchResult:
    env: str
    device: str
    device_name: str
    torch_version: str
    threads: int
    fused: bool
    batch_size: int
    hidden_dim: int
    model_hidden_dim: int
    rows: list[SeedRow]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_seed_bench(
    cfg: RunConfig,
    seed_counts: list[int],
    *,
    updates: int = 50,
    windows: int = 5,
    loop_steps: int | None = None,
    fill_steps: int = 5000,
) -> SeedBenchResult:
    """Measure ``cfg``'s agent with each number of seeds in ``seed_counts`` (module doc)."""
    ThreadPolicy(cfg.threads)
    device = resolve_device(cfg.device)
    spec = describe_env(cfg.env)
    capacity = max(cfg.agent.buffer_size, fill_steps + 2000)
    # the largest count's agent (its replay shared: one buffer), before anything is measured
    largest = replace(cfg, seeds=list(range(1, max(seed_counts) + 1)), steps=0)
    estimate = estimate_run(
        largest, spec.obs_dim, spec.action_dim, online=False, dataset_rows=capacity
    )
    check_resources(estimate, Path("."), f"alm bench --seeds {max(seed_counts)}")
    replay = ReplayBuffer(capacity, spec.obs_dim, spec.action_dim, cfg.agent.seq_len, device)
    fill_with_env(replay, cfg.env, fill_steps, cfg.seed)
    fused = cfg.agent.compile == "on"
    rows: list[SeedRow] = []
    for count in seed_counts:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seeds = tuple(range(cfg.seed, cfg.seed + count))
        torch.manual_seed(cfg.seed)
        agent = AlmAgent(spec.obs_dim, spec.action_dim, cfg.agent, device, seeds=seeds, fused=fused)
        updater = make_updater(agent, replay)  # every seed samples the replay on its own
        std = torch.tensor(0.5, device=device)
        for _ in range(3):  # warm-up: Adam's state, the fused compile, the CUDA graph capture
            updater.step(std)
        per_window = max(updates // windows, 1)
        ups = statistics.median(
            rate(lambda u=updater, s=std: u.step(s), device, per_window) for _ in range(windows)
        )
        loop = seed_loop_rate(agent, replay, cfg, loop_steps or per_window, std)
        base = next((r.seed_updates_per_sec for r in rows if r.seeds == 1), None)
        rows.append(
            SeedRow(
                seeds=count,
                updates_per_sec=ups,
                seed_updates_per_sec=count * ups,
                speedup=1.0 if base is None else count * ups / base,
                seed_env_steps_per_sec=count * loop,
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                cuda_max_allocated_mib=(
                    torch.cuda.max_memory_allocated(device) / 2**20
                    if device.type == "cuda"
                    else None
                ),
            )
        )
        del agent, updater
    return SeedBenchResult(
        **machine_fields(cfg.env, device),
        fused=fused,
        batch_size=cfg.agent.batch_size,
        hidden_dim=cfg.agent.hidden_dim,
        model_hidden_dim=cfg.agent.model_hidden_dim,
        rows=rows,
    )


def seed_loop_rate(
    agent: AlmAgent, replay: ReplayBuffer, cfg: RunConfig, steps: int, std: torch.Tensor
) -> float:
    """Loop iterations per second of the online loop for the agent's S seeds: one batched
    act, S env steps and stores, one batched update (each seed's replay a copy of
    ``replay``)."""
    count, device = agent.num_seeds, agent.device
    seed_replay = SeedReplay.create(
        count, replay.capacity, agent.obs_dim, agent.action_dim, replay.seq_len, device
    )
    saved = replay.state_dict()
    for buffer in seed_replay.buffers:
        buffer.load_state_dict(saved)
    updater = make_updater(agent, seed_replay)
    seeds = [cfg.seed + 1 + s for s in range(count)]
    envs = [make_env(cfg.env, seed=seed) for seed in seeds]
    stepper = SeedEnvs.start(envs, seed_replay.buffers, seeds)
    act_std = float(std)

    def one_step() -> None:
        step_seeds(stepper, agent.act(stepper.observations(), act_std))
        updater.step(std)

    one_step()
    synchronize(device)
    result = rate(one_step, device, steps)
    stepper.close()
    return result


def format_seed_result(result: SeedBenchResult) -> str:
    """The table, one line per N."""
    lines = [
        f"env {result.env}  device {result.device} ({result.device_name})  "
        f"torch {result.torch_version}  threads {result.threads}  fused {result.fused}",
        f"batch {result.batch_size}  hidden {result.hidden_dim}  model hidden "
        f"{result.model_hidden_dim}",
        "seeds  updates/s  seed-updates/s  vs N=1  seed env-steps/s  peak RSS MiB"
        + ("  CUDA MiB" if result.device.startswith("cuda") else ""),
    ]
    for row in result.rows:
        cuda = "" if row.cuda_max_allocated_mib is None else f"  {row.cuda_max_allocated_mib:8.0f}"
        lines.append(
            f"{row.seeds:5d}  {row.updates_per_sec:9.2f}  {row.seed_updates_per_sec:14.2f}  "
            f"{row.speedup:5.2f}x  {row.seed_env_steps_per_sec:16.2f}  {row.peak_rss_mib:12.0f}"
            + cuda
        )
    return "\n".join(lines)
