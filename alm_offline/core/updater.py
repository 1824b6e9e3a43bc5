"""Sample-and-update steps: the seam between a replay buffer and the agent.

``make_updater(agent, replay)`` returns an object whose ``step(std)`` samples one batch of
sequences and one of transitions for every seed of the agent (``SeedReplay``; a plain
``ReplayBuffer`` is shared by all seeds) and runs ``agent.update`` on them:

* ``EagerUpdater``: plain PyTorch, on any device (the reference path).
* ``CudaGraphUpdater``: on CUDA, sampling and the whole update (every forward, backward,
  clip, Adam step and Polyak update) are captured once as a CUDA graph and replayed, so an
  update is one graph launch with no host work and no host-device sync. The first
  ``WARMUP_UPDATES`` steps run eagerly on a side stream (they are real updates, as capture
  requires), then the graph is captured; if capture fails the updater says so once and
  stays eager. Inputs that change between steps (the exploration std, the replay's
  contents and index sets) live in device tensors the graph reads in place.

Neither owns the agent or the buffer; training loops and ``alm bench`` hold both.
"""

from __future__ import annotations

import warnings

import torch

from alm_offline.core.agent import AlmAgent
from alm_offline.core.metrics import Metrics
from alm_offline.core.replay import ReplayBuffer, SeedReplay, SequenceBatch, TransitionBatch
from alm_offline.errors import AlmWarning, first_line

WARMUP_UPDATES = 3


class EagerUpdater:
    """Sample + ``agent.update``, op by op."""

    graphed = False

    def __init__(self, agent: AlmAgent, replay: ReplayBuffer | SeedReplay) -> None:
        if isinstance(replay, ReplayBuffer):
            replay = SeedReplay.shared(replay, agent.num_seeds)
        if replay.num_seeds != agent.num_seeds:
            raise ValueError(
                f"a replay for {replay.num_seeds} seeds, the agent has {agent.num_seeds}"
            )
        self.agent, self.replay = agent, replay
        self.batch_size = agent.cfg.batch_size

    def sample(self) -> tuple[SequenceBatch, TransitionBatch]:
        """(S, K+1, B, D) sequences and (S, B, ...) transitions from the replay."""
        return (
            self.replay.sample_sequences(self.batch_size),
            self.replay.sample_transitions(self.batch_size),
        )

    def step(self, std: float | torch.Tensor) -> Metrics:
        """One update at exploration std ``std``; detached metric tensors (no host sync)."""
        return self.agent.update(*self.sample(), std)


class CudaGraphUpdater(EagerUpdater):
    """Sample + update replayed from one captured CUDA graph (see the module docstring)."""

    def __init__(self, agent: AlmAgent, replay: ReplayBuffer | SeedReplay) -> None:
        super().__init__(agent, replay)
        self.device = agent.device
        self._std = torch.zeros((), device=self.device)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._keys: list[str] = []
        self._stacked: torch.Tensor | None = None
        self._eager_steps = 0
        self._failed = False
        on_cuda = self.device.type == "cuda"
        self._side_stream = torch.cuda.Stream(self.device) if on_cuda else None

    @property
    def graphed(self) -> bool:  # type: ignore[override]
        return self._graph is not None

    def _stacked_update(self) -> torch.Tensor:
        metrics = self.agent.update(*self.sample(), self._std)
        self._keys = list(metrics)
        return torch.stack([value.float() for value in metrics.values()])

    def _eager(self) -> torch.Tensor:
        """One update outside the graph; on CUDA on a side stream, as capture requires."""
        side = self._side_stream
        if side is None:
            return self._stacked_update()
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            stacked = self._stacked_update()
        torch.cuda.current_stream(self.device).wait_stream(side)
        return stacked

    def _capture(self) -> None:
        """Record sample + update once; capture runs no kernels, so no update happens here."""
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._stacked = self._stacked_update()
        except (RuntimeError, AssertionError) as exc:  # no CUDA, or an uncapturable op
            self._failed = True
            reason = first_line(exc)
            warnings.warn(
                f"CUDA graph capture failed, updating eagerly ({reason})", AlmWarning, stacklevel=2
            )
            return
        self._graph = graph

    def step(self, std: float | torch.Tensor) -> Metrics:
        if isinstance(std, torch.Tensor):
            self._std.copy_(std)
        else:
            self._std.fill_(std)
        if self._graph is None and not self._failed and self._eager_steps >= WARMUP_UPDATES:
            self._capture()
        if self._graph is None:
            self._eager_steps += 1
            stacked = self._eager()
        else:
            self._graph.replay()
            stacked = self._stacked.clone()  # the graph overwrites its output on replay
        return dict(zip(self._keys, stacked.unbind(0), strict=True))


def make_updater(agent: AlmAgent, replay: ReplayBuffer | SeedReplay) -> EagerUpdater:
    """A ``CudaGraphUpdater`` on CUDA when ``agent.cfg.cuda_graph``, else eager."""
    if agent.device.type == "cuda" and agent.cfg.cuda_graph:
        return CudaGraphUpdater(agent, replay)
    return EagerUpdater(agent, replay)
