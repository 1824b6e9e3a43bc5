"""The fused update against the eager one, at the three configs of issue 25, in one run.

    python benchmarks/fused_update.py [--device cpu] [--updates 200] [--paper-updates 20]
        [--cold] [--out FILE.json]

Rows (each ``alm bench --compare-fused``: a new eager agent, then a new fused one, on the same
replay of real transitions, in this one process):

* quick (``make run``'s config, InvertedPendulum-v5), its own threads (1);
* offline-locomotion (HalfCheetah-v5 dims), its own threads (1);
* paper defaults (HalfCheetah-v5), fp32 and bf16, ``threads=2``.

Each row gives eager and fused updates/s, the speedup, the compile time and Inductor cache
result, and the matmul floor: this run's fp32 matmul throughput over the update's FLOPs, the
rate an update made of nothing but its matrix products would reach. The bf16 row's ratio is
also taken against the fp32 row's eager rate. ``--cold`` points Inductor's cache at a new
empty folder, so compile times are a first run's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROWS = (
    # name, config, env, overrides, paper-sized
    ("quick", "quick", "InvertedPendulum-v5", (), False),
    # its likelihood term of before issue 28, which docs/fused-update.md's figures measured
    (
        "offline-locomotion",
        "offline-locomotion",
        "HalfCheetah-v5",
        ("agent.bc_term=likelihood", "agent.bc_weight=200"),
        False,
    ),
    ("paper fp32", None, "HalfCheetah-v5", ("threads=2",), True),
    ("paper bf16", None, "HalfCheetah-v5", ("threads=2", "agent.precision=bf16"), True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--updates", type=int, default=200, help="timed updates, small configs")
    parser.add_argument("--paper-updates", type=int, default=20, help="timed, paper defaults")
    parser.add_argument("--cold", action="store_true", help="start from an empty Inductor cache")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.cold:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")

    import torch

    from alm_offline.config import load_config
    from alm_offline.tools.update_speed import matmul_gflops, run_bench

    results, fp32_eager = [], None
    for name, config, env, overrides, paper in ROWS:
        cfg = load_config(config, (f"env={env}", f"device={args.device}", *overrides))
        result = run_bench(
            cfg, updates=args.paper_updates if paper else args.updates, compare_fused=True
        ).as_dict()
        result["row"] = name
        if name == "paper fp32":
            fp32_eager = result["eager_updates_per_sec"]
        if cfg.agent.precision == "bf16":  # the same floor at bf16 matmul speed
            result["matmul_gflops_bf16"] = matmul_gflops(
                torch.device(args.device), dtype=torch.bfloat16
            )
            result["bf16_matmul_floor_updates_per_sec"] = (
                result["matmul_gflops_bf16"] * 1e9 / result["flops_per_update"]
            )
        if name == "paper bf16" and fp32_eager:
            result["fused_over_fp32_eager"] = result["updates_per_sec"] / fp32_eager
            result["eager_over_fp32_eager"] = result["eager_updates_per_sec"] / fp32_eager
        results.append(result)
        print(format_row(result), flush=True)
    print(f"\n{results[0]['device_name']}, torch {results[0]['torch_version']}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


def format_row(r: dict) -> str:
    line = (
        f"| {r['row']} | {r['threads']} | {r['eager_updates_per_sec']:.2f} | "
        f"{r['updates_per_sec']:.2f} | {r['fused_speedup']:.2f}x | "
        f"{r['matmul_floor_updates_per_sec']:.1f} | {r['compile_seconds']:.1f} s "
        f"({r['compile_cache']}) |"
    )
    if "bf16_matmul_floor_updates_per_sec" in r:
        line += f" bf16 matmul floor {r['bf16_matmul_floor_updates_per_sec']:.1f};"
    if "fused_over_fp32_eager" in r:
        line += (
            f" bf16 over fp32 eager: eager {r['eager_over_fp32_eager']:.2f}x, "
            f"fused {r['fused_over_fp32_eager']:.2f}x"
        )
    return line


if __name__ == "__main__":
    main()
