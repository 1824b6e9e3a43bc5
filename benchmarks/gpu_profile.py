"""Where one ALM update's GPU time goes, at paper defaults (HalfCheetah-v5 dims).

    python benchmarks/gpu_profile.py [--precision fp32|tf32|bf16] [--updates 20]

Prints: kernels launched per eager update, CUDA time per update summed over kernels, wall
time per eager update and per graph replay (CUDA events), and the top kernels by CUDA time.
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

from alm_offline.agent import AlmAgent
from alm_offline.config import AgentConfig
from alm_offline.replay import ReplayBuffer
from alm_offline.updater import CudaGraphUpdater, EagerUpdater

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
    args = parser.parse_args()
    cfg = AgentConfig(precision=args.precision)
    agent = AlmAgent(OBS, ACT, cfg, "cuda")
    replay = random_replay(cfg, "cuda")
    eager = EagerUpdater(agent, replay)
    for _ in range(3):
        eager.step(0.3)
    eager_ms = per_update_ms(lambda: eager.step(0.3), args.updates)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(args.updates):
            eager.step(0.3)
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    kernels = sum(e.count for e in events) / args.updates
    cuda_ms = sum(e.self_device_time_total for e in events) / 1000 / args.updates
    graphed = CudaGraphUpdater(agent, replay)
    for _ in range(5):
        graphed.step(0.3)
    graph_ms = per_update_ms(lambda: graphed.step(0.3), args.updates * 5)
    print(
        f"precision {args.precision}: {kernels:.0f} kernels/update, {cuda_ms:.2f} ms kernel time, "
        f"eager {eager_ms:.2f} ms ({1000 / eager_ms:.0f}/s), graph {graph_ms:.2f} ms "
        f"({1000 / graph_ms:.0f}/s, graphed {graphed.graphed})"
    )
    print(
        prof.key_averages().table(
            sort_by="self_device_time_total", row_limit=25, max_name_column_width=70
        )
    )


if __name__ == "__main__":
    main()
