"""What the latent model's KL is made of: ``alm analyze model-kl``.

``model/kl`` is KL(m(z'|z, a) || e_targ(z'|s')) summed over the Z latent dims. On every
transition (s, a, s') of a run's data (an offline run's dataset, an online run's replay),
at z = the encoder's mean at s, it is split into

* the mean part, 0.5 sum_d ((mu_m - mu_targ) / std_targ)^2, and the spread part (the stds'
  mismatch), as ``gaussian_kl_split`` gives them;
* the mean part as (the share of the latents' variance the model misses) x (how many
  target stds the latents span): with ``missed = sum_d E[(mu_m - mu_targ)^2] / sum_d
  Var(mu_targ)`` and ``span = sqrt(mean_d Var(mu_targ)) / std_targ``, the mean part is
  about 0.5 Z missed span^2 (exactly so when std_targ is the same everywhere).

A KL that grows while ``missed`` stays put is a latent space that widens against the
encoder's std, not a model that predicts worse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm_offline.config import RunConfig
from alm_offline.core.agent import AlmAgent
from alm_offline.core.losses import gaussian_kl_split
from alm_offline.errors import AlmError
from alm_offline.training.checkpoint import (
    checkpoint_path,
    load_agent,
    read_checkpoint,
    resolve_checkpoint,
)
from alm_offline.training.start import load_offline_dataset

CHUNK = 4096  # transitions per forward pass


class ModelKlError(AlmError):
    """Bad input to ``alm analyze model-kl`` (one line)."""


@dataclass(frozen=True)
class KlParts:
    """One checkpoint's model KL on its data, averaged over transitions and seeds."""

    source: str
    updates: int
    transitions: int
    kl: float  # nats, mean part + spread part
    mean_part: float
    spread_part: float
    target_std: float  # mean over dims and transitions of e_targ's std
    model_std: float
    latent_sd: float  # sqrt(mean_d Var over transitions of mu_targ)
    span: float  # latent_sd / target_std
    missed: float  # share of the latents' variance the model's mean misses

    def row(self) -> str:
        return (
            f"| {self.source} | {self.updates} | {self.kl:.0f} | {self.mean_part:.0f} | "
            f"{self.spread_part:.1f} | {self.target_std:.3f} | {self.latent_sd:.2f} | "
            f"{self.span:.1f} | {self.missed:.4f} |"
        )


HEADER = (
    "| run | updates | KL | mean part | spread part | target std | latent sd | span | missed |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def dataset_transitions(cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An offline run's dataset (``cfg.dataset`` as it trained on it) as transitions:
    observations (T, D), actions in the agent's box (T, A), next observations (T, D)."""
    dataset = load_offline_dataset(cfg)
    obs, next_obs = dataset.transition_observations()
    return torch.as_tensor(obs), torch.as_tensor(dataset.agent_actions()), torch.as_tensor(next_obs)


def replay_transitions(replay: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An online checkpoint's replay state (``ReplayBuffer.state_dict``) as transitions: its
    rows with a successor, (T, D), (T, A), (T, D); the row after the last is the first (a
    full ring buffer)."""
    obs = replay["obs"].float()
    rows = torch.as_tensor(np.flatnonzero(replay["has_next"].numpy()))
    return obs[rows], replay["action"][rows].float(), obs[(rows + 1) % len(obs)]


@torch.no_grad()
def kl_parts(
    agent: AlmAgent, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
) -> dict[str, float]:
    """The model KL's parts over transitions obs (T, D), action (T, A), next_obs (T, D), for
    every seed of ``agent`` at once (see the module docstring)."""
    wm, seeds = agent.wm, agent.num_seeds
    sums: dict[str, torch.Tensor] = {}
    target_means = []
    for start in range(0, len(obs), CHUNK):
        chunk = slice(start, start + CHUNK)
        s, a, s_next = (
            x[chunk].to(agent.device).expand(seeds, -1, -1) for x in (obs, action, next_obs)
        )
        z = wm.encode(s)[0]
        model_mean, model_std = wm.next(z, a)
        target_mean, target_std = wm.encode_target(s_next)
        mean_part, spread_part = gaussian_kl_split(model_mean, model_std, target_mean, target_std)
        parts = {
            "mean_part": mean_part.sum(-1),
            "spread_part": spread_part.sum(-1),
            "target_std": target_std.mean(-1).sum(-1),
            "model_std": model_std.mean(-1).sum(-1),
            "error": (model_mean - target_mean).pow(2).sum(-1).sum(-1),
        }
        for key, value in parts.items():
            sums[key] = sums.get(key, 0) + value.double()  # (S,)
        target_means.append(target_mean.double())
    count = len(obs)
    means = {key: value / count for key, value in sums.items()}
    variance = torch.cat(target_means, dim=1).var(dim=1).sum(-1)  # (S,) sum over dims
    latent_sd = (variance / target_means[0].shape[-1]).sqrt()
    per_seed = {
        "kl": means["mean_part"] + means["spread_part"],
        "mean_part": means["mean_part"],
        "spread_part": means["spread_part"],
        "target_std": means["target_std"],
        "model_std": means["model_std"],
        "latent_sd": latent_sd,
        "span": latent_sd / means["target_std"],
        "missed": means["error"] / variance,
    }
    return {key: float(value.mean()) for key, value in per_seed.items()}


def model_kl(
    source: str | Path, data: str | None = None, which: str = "latest", device: str = "cpu"
) -> KlParts:
    """``alm analyze model-kl`` for one run dir or checkpoint: its model KL's parts on
    ``data`` (a dataset spec; default: the offline run's dataset, an online run's replay)."""
    agent, cfg, state = load_agent(source, device, which)
    if data is not None or cfg.dataset is not None:
        transitions = dataset_transitions(cfg if data is None else replace(cfg, dataset=data))
    elif (replay := _run_replay(source, which, state)) is not None:
        transitions = replay_transitions(replay)
    else:
        raise ModelKlError(f"'{source}' holds no replay and names no dataset: pass --data")
    return KlParts(
        source=str(source),
        updates=int(state.get("counters", {}).get("updates", 0)),
        transitions=len(transitions[0]),
        **kl_parts(agent, *transitions),
    )


def _run_replay(source: str | Path, which: str, state: dict[str, Any]) -> dict | None:
    """The checkpoint's replay, else (a best checkpoint keeps none) its run's latest's."""
    if state.get("replay") or which == "latest":
        return state.get("replay") or None
    _, run_dir = resolve_checkpoint(source, which)
    latest = checkpoint_path(run_dir)
    return read_checkpoint(latest).get("replay") if latest.exists() else None


def describe(results: list[KlParts]) -> str:
    """The results as a markdown table."""
    return "\n".join([HEADER, *(result.row() for result in results)])


def as_dicts(results: list[KlParts]) -> list[dict[str, Any]]:
    return [asdict(result) for result in results]
