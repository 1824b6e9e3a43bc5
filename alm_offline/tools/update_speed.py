"""``alm bench``: how fast one ALM update runs here, against this machine's own matmul speed.

Everything is measured in one process, in one run:

* ``updates_per_sec``: median over timed windows (after warm-up) of sample + update at the
  config's agent settings (paper defaults unless overridden), replay filled with real
  environment transitions;
* ``flops_per_update``: counted with ``torch.utils.flop_counter`` on one update;
* ``matmul_gflops``: fp32 (512 x 1024) @ (1024 x 1024) throughput on the same device and
  threads; ``efficiency`` = (reference FLOPs per update x updates/s) / matmul throughput,
  with the reference implementation's 42.1 GFLOP for HalfCheetah dims, and the same ratio
  with our own count; ``matmul_floor_updates_per_sec``: that throughput over our count, the
  rate of an update made of nothing but its matrix products (no update path can pass it);
* ``env_steps_per_sec``: the online loop (act + env step + store + update);
* peak host RSS and, on CUDA, peak allocated device memory; the replay's size per 1M
  transitions of the env (each observation stored once);
* ``fused`` (``agent.compile=on``, or ``compare_fused``: eager and fused agents measured one
  after the other in the same process, on the same replay): the fused update's figures and
  its compile time (``compile_seconds``, the first fused call), and ``fused_speedup``;
* ``profile``: ATen ops (CPU) or CUDA kernels per update, and the top ops by time
  (``profile_update``).
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from alm_offline.config import RunConfig, resolve_device
from alm_offline.core.agent import AlmAgent
from alm_offline.core.replay import ReplayBuffer
from alm_offline.core.updater import EagerUpdater, make_updater
from alm_offline.runtime.envs import SeedEnvs, describe_env, env_spec, make_env
from alm_offline.runtime.machine import cpu_model
from alm_offline.training.threads import ThreadPolicy

REFERENCE_GFLOP_PER_UPDATE = 42.1  # the reference implementation's count, HalfCheetah dims


@dataclass
class BenchResult:
    """One ``alm bench`` run; every rate is per second of wall time."""

    env: str
    device: str
    device_name: str
    torch_version: str
    threads: int
    precision: str
    graphed: bool
    batch_size: int
    updates_per_sec: float
    updates_per_sec_windows: list[float]
    flops_per_update: float
    matmul_gflops: float
    achieved_gflops: float
    efficiency: float
    efficiency_own_count: float
    matmul_floor_updates_per_sec: float  # an update of nothing but its products at matmul speed
    env_steps_per_sec: float
    peak_rss_mib: float
    cuda_max_allocated_mib: float | None
    replay_gib_per_million: float  # replay memory for 1M transitions of this env
    fused: bool = False
    compile_seconds: float | None = None  # the first fused call: trace + compile + update
    compile_cache: str | None = None  # Inductor's FX-graph cache: hit or miss
    eager_updates_per_sec: float | None = None  # compare_fused: the eager agent's, same run
    fused_speedup: float | None = None  # compare_fused: fused / eager updates per second
    profile: dict[str, Any] | None = None  # profile_update's summary

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name with its SIMD level."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.backends.cpu.get_cpu_capability()}"


def machine_fields(env: str, device: torch.device) -> dict[str, Any]:
    """What every bench result names: env, device (and its name), torch, threads."""
    return {
        "env": env,
        "device": str(device),
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def matmul_gflops(
    device: torch.device, seconds: float = 1.0, dtype: torch.dtype = torch.float32
) -> float:
    """(512, 1024) @ (1024, 1024) throughput in GFLOP/s (median of 5 windows), fp32 unless
    ``dtype`` says otherwise."""
    a = torch.randn(512, 1024, device=device, dtype=dtype)
    b = torch.randn(1024, 1024, device=device, dtype=dtype)
    flop = 2 * 512 * 1024 * 1024
    for _ in range(3):
        a @ b
    synchronize(device)
    start, reps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 5:  # calibrate the window length
        a @ b
        reps += 1
        if device.type == "cuda":
            synchronize(device)
    reps = max(reps, 1)
    rates = []
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        synchronize(device)
        rates.append(reps * flop / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def step_seeds(stepper: SeedEnvs, actions: np.ndarray) -> None:
    """One step of the online loop's env part (``SeedEnvs``), ended episodes restarted."""
    for index in stepper.step(actions):
        stepper.restart(index)


def fill_with_env(replay: ReplayBuffer, env_id: str, steps: int, seed: int) -> None:
    """``steps`` real transitions of uniform random actions in ``env_id``."""
    env = make_env(env_id, seed=seed)
    rng = np.random.default_rng(seed)
    stepper = SeedEnvs.start([env], [replay], [seed])
    action_dim = env_spec(env).action_dim
    for _ in range(steps):
        step_seeds(stepper, rng.uniform(-1.0, 1.0, (1, action_dim)).astype(np.float32))
    stepper.close()


def rate(step: Callable[[], object], device: torch.device, count: int) -> float:
    """Calls of ``step`` per second over ``count`` calls."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        step()
    synchronize(device)
    return count / (time.perf_counter() - start)


@dataclass
class UpdateProfile:
    """``profile_update``'s summary: ``ops_per_update`` counts ATen ops on the CPU (inside a
    fused update only those Inductor calls out to, such as matrix products and random
    draws) or kernels on CUDA; ``top`` rows are (name, calls per update, ms per update)."""

    device: str
    ops_per_update: float
    ms_per_update: float
    top: list[tuple[str, float, float]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        unit = "kernels" if self.device == "cuda" else "ATen ops"
        lines = [
            f"{self.ops_per_update:.0f} {unit}/update, {self.ms_per_update:.2f} ms of them per "
            "update; top by self time (calls/update, ms/update):"
        ]
        lines += [f"  {ms:8.3f} ms  {calls:7.1f}  {name}" for name, calls, ms in self.top]
        return "\n".join(lines)


def profile_update(
    step: Callable[[], object], device: torch.device, updates: int = 10, top: int = 15
) -> UpdateProfile:
    """``torch.profiler`` over ``updates`` calls of ``step`` (already warmed up)."""
    from torch.profiler import ProfilerActivity, profile

    on_cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        for _ in range(updates):
            step()
        synchronize(device)
    if on_cuda:
        events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
        self_us = [e.self_device_time_total for e in events]
    else:
        events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        self_us = [e.self_cpu_time_total for e in events]
    order = sorted(range(len(events)), key=lambda i: -self_us[i])[:top]
    return UpdateProfile(
        device=device.type,
        ops_per_update=sum(e.count for e in events) / updates,
        ms_per_update=sum(self_us) / 1000 / updates,
        top=[
            (events[i].key, events[i].count / updates, self_us[i] / 1000 / updates) for i in order
        ],
    )


def run_bench(
    cfg: RunConfig,
    *,
    updates: int = 50,
    windows: int = 5,
    loop_steps: int | None = None,
    fill_steps: int = 5000,
    compare_fused: bool = False,
    profile: bool = False,
) -> BenchResult:
    """Measure ``cfg``'s agent on ``cfg.env`` (see the module docstring)."""
    ThreadPolicy(cfg.threads)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    spec = describe_env(cfg.env)
    replay = ReplayBuffer(
        max(cfg.agent.buffer_size, fill_steps + 2000),
        spec.obs_dim,
        spec.action_dim,
        cfg.agent.seq_len,
        device,
    )
    fill_with_env(replay, cfg.env, fill_steps, cfg.seed)
    eager_rate = None
    if compare_fused:
        eager_windows = measure_updates(cfg, spec, replay, device, False, updates, windows)[1]
        eager_rate = statistics.median(eager_windows)
    fused = compare_fused or cfg.agent.compile == "on"
    agent, rates, updater, flops = measure_updates(
        cfg, spec, replay, device, fused, updates, windows
    )
    ups = statistics.median(rates)
    std = torch.tensor(0.5, device=device)
    report = None if agent.fused_update is None else agent.fused_update.report
    profiled = None
    if profile:
        profiled = profile_update(lambda: updater.step(std), device).as_dict()
    matmul = matmul_gflops(device)
    per_window = max(updates // windows, 1)
    loop_rate = online_loop_rate(
        agent, updater, replay, cfg.env, loop_steps or per_window, cfg.seed, std
    )
    reference_gflops = REFERENCE_GFLOP_PER_UPDATE * ups
    return BenchResult(
        **machine_fields(cfg.env, device),
        precision=cfg.agent.precision,
        graphed=updater.graphed,
        batch_size=cfg.agent.batch_size,
        updates_per_sec=ups,
        updates_per_sec_windows=rates,
        flops_per_update=flops,
        matmul_gflops=matmul,
        achieved_gflops=reference_gflops,
        efficiency=reference_gflops / matmul,
        efficiency_own_count=flops * ups / 1e9 / matmul,
        matmul_floor_updates_per_sec=matmul * 1e9 / flops,
        env_steps_per_sec=loop_rate,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        cuda_max_allocated_mib=(
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
        replay_gib_per_million=ReplayBuffer.bytes_per_slot(spec.obs_dim, spec.action_dim)
        * 10**6
        / 2**30,
        fused=fused,
        compile_seconds=None if report is None else report.seconds,
        compile_cache=None if report is None else report.cache,
        eager_updates_per_sec=eager_rate,
        fused_speedup=None if eager_rate is None else ups / eager_rate,
        profile=profiled,
    )


def measure_updates(
    cfg: RunConfig,
    spec: Any,
    replay: ReplayBuffer,
    device: torch.device,
    fused: bool,
    updates: int,
    windows: int,
) -> tuple[AlmAgent, list[float], EagerUpdater, float]:
    """A new agent (seeded by ``cfg.seed``) on ``replay``: (agent, updates/s of each timed
    window, its updater, FLOPs of one update counted eagerly)."""
    torch.manual_seed(cfg.seed)
    agent = AlmAgent(spec.obs_dim, spec.action_dim, cfg.agent, device, fused=fused)
    updater = make_updater(agent, replay)
    std = torch.tensor(0.5, device=device)
    for _ in range(3):  # warm-up: Adam's state, the fused compile, the CUDA graph capture
        updater.step(std)
    with FlopCounterMode(display=False) as counter:
        agent.eager_update(*updater.sample(), std)  # eagerly: graphs hide their ops
    per_window = max(updates // windows, 1)
    rates = [rate(lambda: updater.step(std), device, per_window) for _ in range(windows)]
    return agent, rates, updater, float(counter.get_total_flops())


def online_loop_rate(
    agent: AlmAgent,
    updater: EagerUpdater,
    replay: ReplayBuffer,
    env_id: str,
    steps: int,
    seed: int,
    std: torch.Tensor,
) -> float:
    """Env steps per second of act + step + store + one update per step (0-d ``std``)."""
    stepper = SeedEnvs.start([make_env(env_id, seed=seed + 1)], [replay], [seed + 1])
    act_std = float(std)

    def one_step() -> None:
        step_seeds(stepper, agent.act(stepper.observations(), act_std))
        updater.step(std)

    one_step()
    result = rate(one_step, std.device, steps)
    stepper.close()
    return result


def format_result(result: BenchResult) -> str:
    """Human-readable lines of a ``BenchResult``."""
    mem = f"peak RSS {result.peak_rss_mib:.0f} MiB"
    if result.cuda_max_allocated_mib is not None:
        mem += f", CUDA max allocated {result.cuda_max_allocated_mib:.0f} MiB"
    windows = ", ".join(f"{r:.2f}" for r in result.updates_per_sec_windows)
    return "\n".join(
        [
            f"env {result.env}  device {result.device} ({result.device_name})  "
            f"torch {result.torch_version}  threads {result.threads}",
            f"precision {result.precision}  graphed {result.graphed}  fused {result.fused}  "
            f"batch {result.batch_size}",
            f"updates/s        {result.updates_per_sec:.2f}  (windows: {windows})",
            f"FLOP/update      {result.flops_per_update / 1e9:.1f} G counted here, "
            f"{REFERENCE_GFLOP_PER_UPDATE} G reference",
            f"matmul fp32      {result.matmul_gflops:.1f} GFLOP/s (512x1024 @ 1024x1024)",
            f"efficiency       {result.efficiency:.2f} (reference count), "
            f"{result.efficiency_own_count:.2f} (own count); matmul floor "
            f"{result.matmul_floor_updates_per_sec:.2f} updates/s",
            f"env steps/s      {result.env_steps_per_sec:.2f}  (act + step + store + update)",
            f"memory           {mem}",
            f"replay           {result.replay_gib_per_million:.2f} GiB per 1M transitions",
            *_fused_lines(result),
        ]
    )


def _fused_lines(result: BenchResult) -> list[str]:
    lines = []
    if result.fused:
        compiled = ""
        if result.compile_seconds is not None:
            compiled = f", compiled in {result.compile_seconds:.1f} s"
            compiled += f" (Inductor cache {result.compile_cache})"
        lines.append(f"fused update     yes{compiled}")
    if result.fused_speedup is not None:
        lines.append(
            f"eager            {result.eager_updates_per_sec:.2f} updates/s in the same run; "
            f"fused {result.fused_speedup:.2f}x"
        )
    if result.profile is not None:
        lines.append(UpdateProfile(**result.profile).format())
    return lines
