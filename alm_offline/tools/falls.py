"""What imagined rollouts do past a fall: ``alm analyze falls`` (docs/termination.md).

On an offline run's dataset (or ``--data``), for the K of the run's config:

* how often falls meet the update: the share of transitions that end in a fall, of the
  K-step real sequences the model bound samples that end in one (``sequence_fall_share``),
  and of the start states of the actor's rollouts (every transition) whose own episode
  falls within K steps (``near_fall_share``);
* from each state k = 1..K steps before a real fall, a K-step rollout in the model (mean
  latents, the data's k actions up to the fall, then the policy's mean actions): the
  discounted sum of predicted rewards up to the fall against the real one (exact: nothing
  follows a fall), and what the rollout adds past the fall, the predicted rewards of steps
  k..K-1 plus g^K min Q(z_K, pi(z_K)), which the real return does not have (0);
* the value target there: min Q(z_K, pi(z_K)) after a sequence's last step falls (k = K),
  the term the model bound adds (``model_bound_loss``) unless ``agent.termination`` masks it;
* with a termination head, its mean p(end) on falling transitions and on the others.

All at the encoder's mean, averaged over the run's seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm_offline.core.agent import AlmAgent
from alm_offline.datasets.episodes import EpisodeDataset
from alm_offline.errors import AlmError
from alm_offline.training.checkpoint import load_agent
from alm_offline.training.start import load_offline_dataset


class FallsError(AlmError):
    """Bad input to ``alm analyze falls`` (one line)."""


@dataclass(frozen=True)
class StepsBeforeFall:
    """Rollouts from the states ``k`` steps before a real fall."""

    k: int
    states: int
    real_return: float  # sum_{t<k} g^t r_t, the data's (all of the return from there)
    imagined_to_fall: float  # sum_{t<k} g^t r_hat_t along the data's actions
    imagined_past_fall: float  # sum_{k<=t<K} g^t r_hat_t + g^K min Q(z_K, pi(z_K))
    value_at_end: float  # min Q(z_K, pi(z_K)) (undiscounted)


@dataclass(frozen=True)
class FallFacts:
    source: str
    updates: int
    horizon: int
    transitions: int
    fall_share: float
    sequence_fall_share: float
    near_fall_share: float
    before_fall: list[StepsBeforeFall]
    head_on_falls: float | None  # mean p(end) on falling transitions (None: no head)
    head_elsewhere: float | None

    def describe(self) -> str:
        lines = [
            f"{self.source} ({self.updates} updates), K = {self.horizon}, "
            f"{self.transitions} transitions: {100 * self.fall_share:.2f}% end in a fall, "
            f"{100 * self.sequence_fall_share:.2f}% of K-step sequences do, "
            f"{100 * self.near_fall_share:.2f}% of start states fall within K steps",
            "| k before fall | states | real return | imagined to fall | imagined past fall "
            "| Q(z_K) |",
            "|---|---|---|---|---|---|",
        ]
        for row in self.before_fall:
            lines.append(
                f"| {row.k} | {row.states} | {row.real_return:.2f} | {row.imagined_to_fall:.2f}"
                f" | {row.imagined_past_fall:.2f} | {row.value_at_end:.2f} |"
            )
        if self.head_on_falls is not None:
            lines.append(
                f"termination head: p(end) {self.head_on_falls:.3f} on falls, "
                f"{self.head_elsewhere:.4f} elsewhere"
            )
        return "\n".join(lines)


def fall_positions(dataset: EpisodeDataset) -> np.ndarray:
    """The transition index of every fall (an episode's terminal last step), (F,)."""
    ends = np.cumsum(dataset.episode_lengths) - 1
    return ends[dataset.terminations[ends]]


def fall_shares(dataset: EpisodeDataset, horizon: int) -> tuple[float, float, float]:
    """(share of transitions that fall, of K-step sequences that end in a fall, of
    transitions whose episode falls within K steps)."""
    falls = fall_positions(dataset)
    lengths = dataset.episode_lengths
    sequences = np.clip(lengths - horizon + 1, 0, None).sum()
    fall_lengths = lengths[dataset.terminations[np.cumsum(lengths) - 1]]
    near = np.minimum(fall_lengths, horizon).sum()
    total = dataset.num_steps
    return len(falls) / total, (fall_lengths >= horizon).sum() / max(sequences, 1), near / total


@torch.no_grad()
def rollouts_before_fall(
    agent: AlmAgent, dataset: EpisodeDataset, k: int, gamma: float
) -> StepsBeforeFall | None:
    """K-step model rollouts from the states ``k`` steps before each fall (episodes of at
    least k steps): the data's k actions, then the policy's mean actions."""
    wm, horizon, seeds = agent.wm, agent.cfg.seq_len, agent.num_seeds
    falls = fall_positions(dataset)
    lengths = dataset.episode_lengths[dataset.terminations[np.cumsum(dataset.episode_lengths) - 1]]
    falls = falls[lengths >= k]
    if len(falls) == 0:
        return None
    obs, _ = dataset.transition_observations()
    actions, rewards = dataset.agent_actions(), dataset.rewards
    starts = falls - k + 1
    device = agent.device
    z = wm.encode(torch.as_tensor(obs[starts], device=device).expand(seeds, -1, -1))[0]
    discounts = gamma ** np.arange(k)
    real = (rewards[starts[:, None] + np.arange(k)] * discounts).sum(1)
    to_fall = past_fall = 0.0
    for t in range(horizon):
        if t < k:
            a = torch.as_tensor(actions[starts + t], device=device).expand(seeds, -1, -1)
        else:
            a = wm.pi(z)
        reward = gamma**t * wm.reward(z, a).squeeze(-1)  # (S, F)
        if t < k:
            to_fall = to_fall + reward
        else:
            past_fall = past_fall + reward
        z = wm.next(z, a)[0]
    value = wm.q(z, wm.pi(z)).min(0).values.squeeze(-1)  # (S, F)
    past_fall = past_fall + gamma**horizon * value
    return StepsBeforeFall(
        k=k,
        states=len(falls),
        real_return=float(real.mean()),
        imagined_to_fall=float(torch.as_tensor(to_fall).mean()),
        imagined_past_fall=float(past_fall.mean()),
        value_at_end=float(value.mean()),
    )


@torch.no_grad()
def head_predictions(agent: AlmAgent, dataset: EpisodeDataset) -> tuple[float, float] | None:
    """The termination head's mean p(end) on falling transitions and on the others."""
    wm = agent.wm
    if wm.termination is None:
        return None
    obs, _ = dataset.transition_observations()
    seeds, device = agent.num_seeds, agent.device
    actions = dataset.agent_actions()
    probabilities = []
    for start in range(0, len(obs), 4096):
        rows = slice(start, start + 4096)
        s = torch.as_tensor(obs[rows], device=device).expand(seeds, -1, -1)
        a = torch.as_tensor(actions[rows], device=device).expand(seeds, -1, -1)
        probabilities.append(torch.sigmoid(wm.termination_logit(wm.encode(s)[0], a)).mean(0))
    p = torch.cat(probabilities).cpu().numpy()
    falls = dataset.terminations
    return float(p[falls].mean()) if falls.any() else float("nan"), float(p[~falls].mean())


def falls_analysis(
    source: str | Path, data: str | None = None, which: str = "latest", device: str = "cpu"
) -> FallFacts:
    """``alm analyze falls`` for one offline run dir or checkpoint."""
    agent, cfg, state = load_agent(source, device, which)
    if data is None and cfg.dataset is None:
        raise FallsError(f"'{source}' names no dataset (an online run): pass --data")
    dataset = load_offline_dataset(cfg if data is None else replace(cfg, dataset=data))
    horizon, gamma = cfg.agent.seq_len, cfg.agent.gamma
    fall, sequence, near = fall_shares(dataset, horizon)
    rows = [rollouts_before_fall(agent, dataset, k, gamma) for k in range(1, horizon + 1)]
    head = head_predictions(agent, dataset)
    return FallFacts(
        source=str(source),
        updates=int(state.get("counters", {}).get("updates", 0)),
        horizon=horizon,
        transitions=dataset.num_steps,
        fall_share=fall,
        sequence_fall_share=sequence,
        near_fall_share=near,
        before_fall=[row for row in rows if row is not None],
        head_on_falls=None if head is None else head[0],
        head_elsewhere=None if head is None else head[1],
    )


def as_dict(facts: FallFacts) -> dict[str, Any]:
    return asdict(facts)
