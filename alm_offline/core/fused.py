"""The fused update (``agent.compile``): ALM's whole update compiled as one graph.

Eager PyTorch runs one update of the small configs as about 4,600 ATen ops (quick config),
most of them 2-50 us elementwise, copy and view ops around the matrix products.
``FusedUpdate`` hands the agent's whole update to ``torch.compile`` with ``fullgraph``:
the five losses, their backward passes (``torch.autograd.grad``, traced into the graph),
gradient clipping, the four Adam steps and the Polyak updates become one Inductor graph,
whose elementwise work is fused into a few loops around the matrix products (C++ with
OpenMP on the CPU, Triton on CUDA, where ``CudaGraphUpdater`` then captures it).

Numerics: random ops fall back to ATen's (``fallback_random``), so the compiled update draws
the same numbers from the same generator, in the same order, as the eager one; clipping and
Adam are ``torch.nn.utils.clip_grad_norm_``'s and ``torch.optim.Adam``'s maths written as
tensor ops (``clip_and_adam_step``) on the optimisers' own state, so checkpoints are the
same either way. The first update of an agent runs eagerly: it creates Adam's state.

Compile time and cache: the first compiled call traces and compiles (about 30-55 s on a
2-core CPU with an empty cache, whatever the network sizes); Inductor's FX-graph and
AOTAutograd caches (on by default, in ``TORCHINDUCTOR_CACHE_DIR`` or
``/tmp/torchinductor_$USER``) make a later run of the same config compile in 5-10 s.
``CompileReport`` says which it was.

When (``fusion_decision``): ``on`` always fuses, ``off`` never; ``auto`` (the default)
fuses a CPU run of at least ``AUTO_MIN_UPDATES`` seed-updates (updates x seeds), where a cold
compile is repaid at every measured config (docs/fused-update.md), and keeps CUDA eager
(with its CUDA graph) until the fused path has been measured on a GPU.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from alm_offline.core.networks import per_seed
from alm_offline.errors import AlmWarning

AUTO_MIN_UPDATES = 10_000
CLIP_EPS = 1e-6  # clip_grad_norm_'s: coef = max_norm / (total_norm + 1e-6)
# Dynamo caches compiled code per code object, so every agent of a process shares one
# cache for its update, each agent's entry guarded by its own tensors: room for this many
# agents (a sweep worker's trials, the suite's tests) before Dynamo would give up on it
AGENTS_PER_PROCESS = 64


def fusion_decision(
    mode: str, planned_updates: int, device: torch.device, seeds: int = 1
) -> tuple[bool, str]:
    """(fuse?, why) for a run of ``planned_updates`` updates of ``seeds`` seeds on ``device``.

    ``auto`` counts seed-updates: an update of S seeds does S seeds' work, so the one compile
    is repaid S times sooner (quick config, 2 threads: fused 68 / 24 updates/s against eager
    32 / 12 at 1 / 5 seeds, docs/seeds.md)."""
    if mode == "on":
        return True, "agent.compile=on"
    if mode == "off":
        return False, "agent.compile=off"
    if device.type != "cpu":
        return False, f"agent.compile=auto: eager on {device.type} (fused not yet measured there)"
    work = planned_updates * seeds
    what = f"{planned_updates} updates" + (f" x {seeds} seeds" if seeds > 1 else "")
    if work < AUTO_MIN_UPDATES:
        return False, (
            f"agent.compile=auto: {what}, under the {AUTO_MIN_UPDATES} seed-updates that repay "
            "a cold compile"
        )
    return True, f"agent.compile=auto: {what} repay the compile"


def clip_coefficients(
    grads: list[torch.Tensor] | tuple[torch.Tensor, ...], max_norm: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each seed's total gradient norm over ``grads`` (each (S, ...)) and its clip factor,
    both (S,): ``clip_grad_norm_``'s maths per seed, coef = min(1, max_norm / (norm + 1e-6))."""
    seeds = grads[0].shape[0]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(seeds, -1), dim=1) for g in grads])
    total = torch.linalg.vector_norm(norms, dim=0)  # (S,): over the tensors, never over seeds
    return total, torch.clamp(max_norm / (total + CLIP_EPS), max=1.0)


def clip_and_adam_step(
    params: list[torch.Tensor],
    grads: list[torch.Tensor] | tuple[torch.Tensor, ...],
    optimizer: torch.optim.Adam,
    max_norm: float,
) -> torch.Tensor:
    """Clip each seed's ``grads`` to total norm ``max_norm`` (``clip_coefficients``), then
    one Adam step of ``params`` on the optimiser's own state (``step``, ``exp_avg``,
    ``exp_avg_sq``), as tensor ops a compiled graph can hold. Returns the pre-clip norms (S,).

    The same maths as the eager per-seed clip + ``Adam.step`` (no weight decay, amsgrad or
    maximize): m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    Written out because neither ``Adam.step`` (it breaks the graph on purpose) nor torch's
    functional ``torch.optim.adam.adam`` (Dynamo stops on it with an AttributeError in torch
    2.13) traces into a full graph.
    """
    total, coef = clip_coefficients(grads, max_norm)
    group = optimizer.param_groups[0]
    beta1, beta2 = group["betas"]
    lr, eps = group["lr"], group["eps"]
    states = [optimizer.state[param] for param in params]
    with torch.no_grad():
        steps = [state["step"] for state in states]
        torch._foreach_add_(steps, 1.0)
        step = steps[0]  # one group: every tensor has taken the same number of steps
        step_size = lr / (1.0 - beta1**step)
        bias_correction2_sqrt = (1.0 - beta2**step).sqrt()
        for param, grad, state in zip(params, grads, states, strict=True):
            grad = grad * per_seed(coef, grad)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1.0 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps
            param.sub_(step_size * exp_avg / denom)
    return total


@dataclass
class CompileReport:
    """The first fused call: its wall time (trace + compile + one update) and whether
    Inductor's cache held the graph."""

    seconds: float
    cache: str  # "hit", "miss" or "none" (a backend without Inductor's cache)


class FusedUpdate:
    """``update_fn(seq, batch, std)`` compiled whole; ``std`` is passed as a 0-d tensor, so
    the exploration schedule never triggers a recompile. ``backend``: ``inductor``, or
    ``aot_eager`` (trace + AOTAutograd without code generation: what the suite uses to
    check that every ablation traces as one graph).

    If compiling fails (no C++ compiler for Inductor, say), it says so once as an
    ``AlmWarning`` and runs ``update_fn`` eagerly from then on (``failed``): a compile
    fails before any of the update has run, so that update is not applied twice."""

    def __init__(self, update_fn: Callable[..., Any], backend: str = "inductor") -> None:
        # Dynamo is imported here, not with the module: 2 s of every process's start that
        # only a fused run needs
        from torch._dynamo.exc import TorchDynamoException
        from torch._dynamo.utils import counters

        self._compile_error, self._counters = TorchDynamoException, counters
        options = {"fallback_random": True} if backend == "inductor" else None
        self.backend = backend
        self._eager = update_fn
        self._compiled = torch.compile(
            update_fn, fullgraph=True, dynamic=False, backend=backend, options=options
        )
        self.report: CompileReport | None = None
        self.failed = False

    def __call__(self, *args: Any) -> Any:
        if self.failed:
            return self._eager(*args)
        try:
            return self._call_compiled(*args)
        except self._compile_error as exc:
            self.failed = True
            lines = str(exc).strip().splitlines()
            reason = lines[0] if lines else type(exc).__name__
            warnings.warn(
                f"the fused update could not be compiled, updating eagerly ({reason})",
                AlmWarning,
                stacklevel=3,
            )
            return self._eager(*args)

    def _call_compiled(self, *args: Any) -> Any:
        with torch._dynamo.config.patch(
            trace_autograd_ops=True, recompile_limit=AGENTS_PER_PROCESS
        ):
            if self.report is not None:
                return self._compiled(*args)
            hits = self._counters["inductor"]["fxgraph_cache_hit"]
            misses = self._counters["inductor"]["fxgraph_cache_miss"]
            started = time.perf_counter()
            out = self._compiled(*args)
            seconds = time.perf_counter() - started
        if self._counters["inductor"]["fxgraph_cache_miss"] > misses:
            cache = "miss"
        elif self._counters["inductor"]["fxgraph_cache_hit"] > hits:
            cache = "hit"
        else:
            cache = "none"
        self.report = CompileReport(seconds=seconds, cache=cache)
        return out
