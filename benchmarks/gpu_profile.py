"""Where one ALM update's GPU time goes, at paper defaults (HalfCheetah-v5 dims).

    python benchmarks/gpu_profile.py [--precision fp32|tf32|bf16] [--updates 20] [--fused]

Prints: kernels launched per eager update, CUDA time per update summed over kernels, wall
time per eager update and per graph replay (CUDA events), and the top kernels by CUDA time.
``--fused``: the same for the fused update (``agent.compile=on``, Inductor's Triton kernels),
kernels before (eager) and after (fused) on one line each.
Needs a GPU; the replay holds random data (no env), since only the timings matter here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alm_offline.config import AgentConfig
from alm_offline.core.agent import AlmAgent
from alm_offline.core.replay import ReplayBuffer
from alm_offline.core.updater import CudaGraphUpdater, EagerUpdater

OBS, ACT = 17, 6  # HalfCheetah-v5


def random_replay(cfg: AgentConfig, device: str) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(20_000, OBS, ACT, cfg.seq_len, device)
    for _ in range(10):
        replay.start_episode(rng.normal(size=OBS))
        for t in range(1000):
            replay.add(rng.uniform(-1, 1, ACT), rng.normal(), t == 999, rng.normal(size=OBS))
    return replay


def per_update_ms(step, count: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(count):
        step()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--fused", action="store_true", help="the fused update's kernels too")
    args = parser.parse_args()
    for fused in (False, True) if args.fused else (False,):
        profile_one(args.precision, args.updates, fused)


def profile_one(precision: str, updates: int, fused: bool) -> None:
    """Kernels, kernel time, eager and graph-replay time of one update (see the docstring)."""
    cfg = AgentConfig(precision=precision)
    torch.manual_seed(0)
    agent = AlmAgent(OBS, ACT, cfg, "cuda", fused=fused)
    replay = random_replay(cfg, "cuda")
    eager = EagerUpdater(agent, replay)
    for _ in range(3):
        eager.step(0.3)
    eager_ms = per_update_ms(lambda: eager.step(0.3), updates)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(updates):
            eager.step(0.3)
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    kernels = sum(e.count for e in events) / updates
    cuda_ms = sum(e.self_device_time_total for e in events) / 1000 / updates
    graphed = CudaGraphUpdater(agent, replay)
    for _ in range(5):
        graphed.step(0.3)
    graph_ms = per_update_ms(lambda: graphed.step(0.3), updates * 5)
    print(
        f"precision {precision}{' fused' if fused else ''}: {kernels:.0f} kernels/update, "
        f"{cuda_ms:.2f} ms kernel time, "
        f"{'fused, ' if fused else 'eager, '}no graph {eager_ms:.2f} ms "
        f"({1000 / eager_ms:.0f}/s), graph {graph_ms:.2f} ms "
        f"({1000 / graph_ms:.0f}/s, graphed {graphed.graphed})"
    )
    print(
        prof.key_averages().table(
            sort_by="self_device_time_total", row_limit=25, max_name_column_width=70
        )
    )


if __name__ == "__main__":
    main()
