"""The paper's analyses of a trained agent (App. E): bias of the lower bound, latent model drift.

* Bias of the bound (Fig. 8, the protocol of Chen et al. 2021): run the deterministic policy,
  and at the states of the first ``max_start_steps`` steps of each episode compare the
  Monte-Carlo discounted return from that state with the K-step estimate of the bound L^K
  at the same state and action. The bias is ``estimate - MC``; the normalised bias divides
  it by ``|mean MC return over the states|``. As in the protocol, the MC return is summed to
  the episode's end, so states near a time-limit truncation get a truncated return.
* Latent model accuracy (Fig. 7): encode the first state of a real trajectory, unroll the
  latent model autoregressively with the trajectory's actions, and compare every predicted
  latent with the encoder's latent of the real state at that step.

Every model call runs under ``torch.no_grad()`` and is batched over states; results are
numpy arrays. ``analyze_bias`` / ``analyze_rollout`` load a checkpoint, run an analysis and
write ``<name>.json`` + ``<name>.png`` atomically (the ``alm analyze`` commands).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm_offline.config import RunConfig, resolve_device
from alm_offline.core.agent import AlmAgent
from alm_offline.core.losses import log_shift_reward, lower_bound_estimate
from alm_offline.core.networks import WorldModel
from alm_offline.errors import AlmError
from alm_offline.runtime.envs import make_env
from alm_offline.runtime.files import write_text_atomic
from alm_offline.runtime.rollout import Policy, run_episode
from alm_offline.tools.plotting import plot_bias, plot_rollout
from alm_offline.training.checkpoint import load_agent, resolve_checkpoint

ACCURACY_THRESHOLD = 0.5  # relative latent error above which a model prediction is "off"
JSON_SAMPLES = 256  # (MC, estimate) pairs kept in bias.json for a scatter plot elsewhere


class AnalysisError(AlmError):
    """Bad input to an analysis (one line)."""


# --------------------------------------------------------------------------- estimates
def monte_carlo_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted reward-to-go: rewards (T,) -> G (T,), G_t = sum_{k>=t} gamma^(k-t) r_k."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise AnalysisError(f"rewards must be one-dimensional, got shape {rewards.shape}")
    returns = np.empty_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


@torch.no_grad()
def latent_unroll(wm: WorldModel, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Model-mean unroll: z0 (S, ..., Z), actions (T, S, ..., A) -> latents (T+1, S, ..., Z),
    [0] = z0."""
    latents = [z0]
    for a in actions:
        latents.append(wm.next(latents[-1], a)[0])
    return torch.stack(latents)


def deterministic(agent: AlmAgent) -> Policy:
    """The agent's deterministic policy (the mean action of the mean latent)."""
    return lambda obs: agent.act(obs, 0.0, deterministic=True)


def _finite(value: float) -> float | None:
    """A JSON-safe float: NaN/inf become None."""
    value = float(value)
    return value if np.isfinite(value) else None


# -------------------------------------------------------------------------------- bias
@dataclass(frozen=True)
class BiasResult:
    """Bias of the bound's estimate against MC returns; per-state arrays are (N,)."""

    env: str
    horizon: int
    gamma: float
    max_start_steps: int
    n_states: int
    episodes: int
    bias_mean: float
    bias_std: float
    normalized_bias_mean: float
    normalized_bias_std: float
    mc_return_mean: float
    estimate_mean: float
    mc_returns: np.ndarray = field(repr=False)
    estimates: np.ndarray = field(repr=False)
    normalized_bias: np.ndarray = field(repr=False)
    episode_index: np.ndarray = field(repr=False)  # which episode each state came from
    step_index: np.ndarray = field(repr=False)  # its step within that episode
    episode_lengths: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary with at most ``JSON_SAMPLES`` evenly spaced (MC, estimate) pairs."""
        picks = np.unique(np.linspace(0, self.n_states - 1, JSON_SAMPLES).round().astype(int))
        return {
            "analysis": "bias",
            "env": self.env,
            "horizon": self.horizon,
            "gamma": self.gamma,
            "max_start_steps": self.max_start_steps,
            "n_states": self.n_states,
            "episodes": self.episodes,
            "episode_lengths": list(self.episode_lengths),
            "bias_mean": _finite(self.bias_mean),
            "bias_std": _finite(self.bias_std),
            "normalized_bias_mean": _finite(self.normalized_bias_mean),
            "normalized_bias_std": _finite(self.normalized_bias_std),
            "mc_return_mean": _finite(self.mc_return_mean),
            "estimate_mean": _finite(self.estimate_mean),
            "samples": {
                "mc_return": [float(x) for x in self.mc_returns[picks]],
                "estimate": [float(x) for x in self.estimates[picks]],
            },
        }

    def describe(self) -> str:
        """Two short human-readable lines."""
        return (
            f"{self.env}: bias of L^{self.horizon} over {self.n_states} states "
            f"({self.episodes} episodes): {self.bias_mean:.3f} +- {self.bias_std:.3f}\n"
            f"normalised bias {self.normalized_bias_mean:.3f} +- {self.normalized_bias_std:.3f} "
            f"(MC return mean {self.mc_return_mean:.3f}, estimate mean {self.estimate_mean:.3f})"
        )


def learned_rewards(rewards: np.ndarray, cfg: RunConfig) -> np.ndarray:
    """The rewards the agent was trained on: (T,) -> (T,); App. A.8's shifted log if asked."""
    shift = cfg.agent.log_reward_shift
    if shift <= 0:
        return rewards
    return log_shift_reward(torch.as_tensor(rewards, dtype=torch.float64), shift).numpy()


def _check_bias_args(episodes: int | None, max_start_steps: int, min_states: int) -> None:
    if episodes is not None and episodes < 1:
        raise AnalysisError(f"episodes must be at least 1, got {episodes}")
    if max_start_steps < 1:
        raise AnalysisError(f"max_start_steps must be at least 1, got {max_start_steps}")
    if min_states < 1:
        raise AnalysisError(f"min_states must be at least 1, got {min_states}")


def bias_analysis(
    agent: AlmAgent,
    cfg: RunConfig,
    episodes: int | None = None,
    max_start_steps: int = 350,
    min_states: int = 1000,
    seed: int = 0,
) -> BiasResult:
    """Bias of L^K (K = ``cfg.agent.seq_len``) against the MC return at visited states.

    Episodes (``reset(seed=seed + i)``) of the deterministic policy run to their end; the
    states of their first ``max_start_steps`` steps are kept until there are at least
    ``min_states`` of them, or for exactly ``episodes`` episodes when given.
    """
    _check_bias_args(episodes, max_start_steps, min_states)
    gamma = cfg.agent.gamma
    env = make_env(cfg.env, seed=seed)
    obs_parts, mc_parts, episode_ids, step_ids, lengths = [], [], [], [], []
    try:
        n_states = 0
        while (len(lengths) < episodes) if episodes is not None else (n_states < min_states):
            episode = run_episode(deterministic(agent), env, seed + len(lengths))
            keep = min(episode.length, max_start_steps)
            obs_parts.append(episode.observations[:keep])
            rewards = learned_rewards(episode.rewards, cfg)
            mc_parts.append(monte_carlo_returns(rewards, gamma)[:keep])
            episode_ids.append(np.full(keep, len(lengths)))
            step_ids.append(np.arange(keep))
            lengths.append(episode.length)
            n_states += keep
    finally:
        env.close()
    obs = torch.as_tensor(np.concatenate(obs_parts), device=agent.device)
    estimates = (
        lower_bound_estimate(
            agent.wm, obs.unsqueeze(0), cfg.agent.seq_len, gamma, cfg.agent.classifier_coef
        )[0]  # the one seed of a run dir's agent
        .cpu()
        .double()
        .numpy()
    )
    mc = np.concatenate(mc_parts)
    bias = estimates - mc
    scale = abs(mc.mean())
    normalized = bias / scale if scale > 0 else np.full_like(bias, np.nan)
    return BiasResult(
        env=cfg.env,
        horizon=cfg.agent.seq_len,
        gamma=gamma,
        max_start_steps=max_start_steps,
        n_states=len(mc),
        episodes=len(lengths),
        bias_mean=float(bias.mean()),
        bias_std=float(bias.std()),
        normalized_bias_mean=float(normalized.mean()),
        normalized_bias_std=float(normalized.std()),
        mc_return_mean=float(mc.mean()),
        estimate_mean=float(estimates.mean()),
        mc_returns=mc,
        estimates=estimates,
        normalized_bias=normalized,
        episode_index=np.concatenate(episode_ids),
        step_index=np.concatenate(step_ids),
        episode_lengths=lengths,
    )


# ----------------------------------------------------------------------------- rollout
@dataclass(frozen=True)
class RolloutResult:
    """Latent model unroll vs encoder latents along one real trajectory of T steps.

    true/predicted latents (T+1, Z), errors (T+1,), coordinates (T+1, C).
    """

    env: str
    horizon: int  # steps asked for
    steps: int  # T: steps the trajectory had (< horizon when the episode ended first)
    ended_early: bool
    observations: np.ndarray = field(repr=False)  # (T+1, D)
    actions: np.ndarray = field(repr=False)  # (T, A)
    true_latents: np.ndarray = field(repr=False)
    predicted_latents: np.ndarray = field(repr=False)
    errors: np.ndarray = field(repr=False)  # L2 per step
    relative_errors: np.ndarray = field(repr=False)  # errors / mean L2 norm of true latents
    latent_norm_mean: float
    first_accurate_steps: int
    true_coords: np.ndarray = field(repr=False)
    predicted_coords: np.ndarray = field(repr=False)
    accuracy_threshold: float = ACCURACY_THRESHOLD

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: per-step errors and the plotted coordinates (no full latents)."""
        return {
            "analysis": "rollout",
            "env": self.env,
            "horizon": self.horizon,
            "steps": self.steps,
            "ended_early": self.ended_early,
            "latent_dim": int(self.true_latents.shape[-1]),
            "latent_norm_mean": _finite(self.latent_norm_mean),
            "accuracy_threshold": self.accuracy_threshold,
            "first_accurate_steps": self.first_accurate_steps,
            "errors": [_finite(x) for x in self.errors],
            "relative_errors": [_finite(x) for x in self.relative_errors],
            "true_coords": self.true_coords.tolist(),
            "predicted_coords": self.predicted_coords.tolist(),
        }

    def describe(self) -> str:
        """Two short human-readable lines."""
        note = f" (episode ended after {self.steps} of {self.horizon})" if self.ended_early else ""
        return (
            f"{self.env}: latent model unrolled {self.steps} steps{note}; "
            f"final L2 error {self.errors[-1]:.3f} (relative {self.relative_errors[-1]:.3f})\n"
            f"stays within relative error {self.accuracy_threshold} for "
            f"{self.first_accurate_steps} steps"
        )


def rollout_analysis(
    agent: AlmAgent,
    cfg: RunConfig,
    horizon: int = 50,
    seed: int = 0,
    coords: int = 3,
    start: int = 0,
) -> RolloutResult:
    """Unroll the latent model along one deterministic-policy trajectory (``reset(seed)``),
    from its state at step ``start`` (0: the first state; later: e.g. a steady gait).

    ``first_accurate_steps``: model steps (of 1..T) whose relative error stays within
    ``ACCURACY_THRESHOLD`` before the first that exceeds it; T when none does.
    """
    if horizon < 1:
        raise AnalysisError(f"horizon must be at least 1, got {horizon}")
    if coords < 1:
        raise AnalysisError(f"coords must be at least 1, got {coords}")
    if start < 0:
        raise AnalysisError(f"start must be >= 0, got {start}")
    env = make_env(cfg.env, seed=seed)
    try:
        whole = run_episode(deterministic(agent), env, seed, max_steps=start + horizon)
    finally:
        env.close()
    if whole.length <= start:
        raise AnalysisError(f"the episode ended after {whole.length} steps, before start={start}")
    observations, actions_np = whole.observations[start:], whole.actions[start:]
    steps = len(actions_np)
    obs = torch.as_tensor(observations, device=agent.device)
    actions = torch.as_tensor(actions_np, device=agent.device)
    with torch.no_grad():
        true = agent.wm.encode(obs.unsqueeze(0))[0][0]  # the one seed's (T+1, Z)
        predicted = latent_unroll(agent.wm, true[:1], actions.unsqueeze(1))[:, 0]  # (T+1, Z)
    true_np = true.cpu().double().numpy()
    pred_np = predicted.cpu().double().numpy()
    errors = np.linalg.norm(pred_np - true_np, axis=-1)
    norm_mean = float(np.linalg.norm(true_np, axis=-1).mean())
    relative = errors / max(norm_mean, 1e-12)
    off = np.flatnonzero(~(relative <= ACCURACY_THRESHOLD))  # NaN counts as off
    first_accurate = int(off[0]) - 1 if len(off) else steps
    c = min(coords, true_np.shape[-1])
    return RolloutResult(
        env=cfg.env,
        horizon=horizon,
        steps=steps,
        ended_early=steps < horizon,
        observations=observations,
        actions=actions_np,
        true_latents=true_np,
        predicted_latents=pred_np,
        errors=errors,
        relative_errors=relative,
        latent_norm_mean=norm_mean,
        first_accurate_steps=max(first_accurate, 0),
        true_coords=true_np[:, :c],
        predicted_coords=pred_np[:, :c],
    )


# ---------------------------------------------------------------- checkpoint -> report


def _analyze(
    source: str | Path,
    out_dir: str | Path | None,
    device: str,
    name: str,
    analysis: Callable[[AlmAgent, RunConfig], Any],
    plot: Callable[[Any, Path], Path],
    **settings: Any,
) -> tuple[dict[str, Any], dict[str, Path], str]:
    """Load the agent of ``source``, run ``analysis(agent, cfg)`` and write ``name``.json and
    ``name``.png; returns (the JSON payload, their paths, the result's description)."""
    if settings.get("seed", 0) < 0:
        raise AnalysisError(f"--seed must be >= 0, got {settings['seed']}")
    resolve_device(device)
    agent, cfg, state = load_agent(source, device)
    if not cfg.env:
        raise AnalysisError(
            f"'{source}' was trained on dataset '{cfg.dataset}', which names no env: the "
            "analyses play episodes in the run's env"
        )
    result = analysis(agent, cfg)
    checkpoint, run_dir = resolve_checkpoint(source)
    payload = {
        "checkpoint": str(checkpoint),
        "updates": state.get("counters", {}).get("updates"),
        **settings,
        **result.as_dict(),
    }
    out = Path(out_dir) if out_dir is not None else run_dir / "analysis"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AnalysisError(f"cannot create '{out}': {exc.strerror}") from None
    paths = {"json": out / f"{name}.json", "png": out / f"{name}.png"}
    payload["files"] = {key: str(path) for key, path in paths.items()}
    write_text_atomic(paths["json"], json.dumps(payload, indent=2) + "\n")
    plot(result, paths["png"])
    return payload, paths, result.describe()


def analyze_bias(
    source: str | Path,
    out_dir: str | Path | None = None,
    *,
    device: str = "cpu",
    episodes: int | None = None,
    max_start_steps: int = 350,
    min_states: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Path], str]:
    """``alm analyze bias``: bias analysis of a run dir or checkpoint -> bias.json + bias.png."""
    _check_bias_args(episodes, max_start_steps, min_states)  # fail before loading anything

    def analysis(agent: AlmAgent, cfg: RunConfig) -> BiasResult:
        return bias_analysis(agent, cfg, episodes, max_start_steps, min_states, seed)

    return _analyze(source, out_dir, device, "bias", analysis, plot_bias, seed=seed)


def analyze_rollout(
    source: str | Path,
    out_dir: str | Path | None = None,
    *,
    device: str = "cpu",
    horizon: int = 50,
    seed: int = 0,
    coords: int = 3,
    start: int = 0,
) -> tuple[dict[str, Any], dict[str, Path], str]:
    """``alm analyze rollout``: latent-model rollout of a run dir or checkpoint ->
    rollout.json + rollout.png."""
    if horizon < 1:  # fail before loading anything
        raise AnalysisError(f"horizon must be at least 1, got {horizon}")

    def analysis(agent: AlmAgent, cfg: RunConfig) -> RolloutResult:
        return rollout_analysis(agent, cfg, horizon, seed, coords, start)

    return _analyze(
        source, out_dir, device, "rollout", analysis, plot_rollout, seed=seed, start=start
    )
