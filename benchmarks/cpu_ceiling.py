"""How close can the paper's networks get to this machine's matmul limit?

Runs ``alm bench``'s measurement (``run_bench``) at paper defaults twice per precision:
as the agent is, and with its activation functions made free (tanh and ELU replaced by the
identity, LayerNorm by its affine part alone). Matrix products, sampling, losses, clipping and
Adam stay. The second figure is an upper bound on what any faster tanh/ELU/LayerNorm kernel
(fused or approximate) could give; it is a measurement of the machine, not a mode of the agent
(those networks would learn something else).

    python benchmarks/cpu_ceiling.py [--threads 2] [--updates 25] [--precision fp32 bf16]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from alm_offline.config import load_config
from alm_offline.core.networks import SeedLayerNorm, TwinCritic, per_seed
from alm_offline.tools.update_speed import matmul_gflops, run_bench


def _affine_only(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    weight = per_seed(self.weight.reshape(-1, self.dim), x)
    return x * weight + per_seed(self.bias.reshape(-1, self.dim), x)


def _critic_without_activations(self: TwinCritic, z: torch.Tensor, a: torch.Tensor):
    x = torch.cat([z, a], dim=-1)
    seeds, lead = x.shape[0], x.shape[1:-1]
    h = x.reshape(seeds, 1, -1, x.shape[-1]).expand(-1, self.members, -1, -1)
    h = h.reshape(seeds * self.members, -1, x.shape[-1])
    h = self.fc2(self.norm(self.fc1(h)))
    return self.out(h).float().reshape(seeds, self.members, *lead, 1).transpose(0, 1)


@contextmanager
def free_activations() -> Iterator[None]:
    """Within the block every network of ``alm_offline.core.networks`` skips tanh, ELU and the
    LayerNorm normalisation (parameters kept, so every optimiser group still has grads)."""
    patched = [
        (nn.Tanh, "forward", lambda self, x: x),
        (nn.ELU, "forward", lambda self, x: x),
        (SeedLayerNorm, "forward", _affine_only),
        (TwinCritic, "forward", _critic_without_activations),
    ]
    saved = [(cls, name, getattr(cls, name)) for cls, name, _ in patched]
    try:
        for cls, name, replacement in patched:
            setattr(cls, name, replacement)
        yield
    finally:
        for cls, name, original in saved:
            setattr(cls, name, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=25)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()

    print("| precision | activations | updates/s | matmul GFLOP/s | efficiency |")
    print("|---|---|---|---|---|")
    for precision in args.precision:
        cfg = load_config(
            None,
            [
                "device=cpu",
                f"threads={args.threads}",
                f"env={args.env}",
                f"agent.precision={precision}",
            ],
        )
        for label, context in (("as built", None), ("free", free_activations)):
            if context is None:
                result = run_bench(cfg, updates=args.updates, loop_steps=1)
            else:
                with context():
                    result = run_bench(cfg, updates=args.updates, loop_steps=1)
            print(
                f"| {precision} | {label} | {result.updates_per_sec:.2f} | "
                f"{result.matmul_gflops:.1f} | {result.efficiency:.2f} |",
                flush=True,
            )
    cpu = torch.device("cpu")
    fp32, bf16 = matmul_gflops(cpu), matmul_gflops(cpu, dtype=torch.bfloat16)
    print(f"\nmatmul (512x1024 @ 1024x1024): fp32 {fp32:.1f}, bf16 {bf16:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
