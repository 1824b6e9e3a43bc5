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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from .agent import AlmAgent, resolve_device
from .checkpoint import load_agent, resolve_checkpoint
from .config import RunConfig
from .envs import make_env
from .losses import log_shift_reward
from .networks import WorldModel
from .plotting import save_figure
from .rundir import write_text_atomic

ACCURACY_THRESHOLD = 0.5  # relative latent error above which a model prediction is "off"
JSON_SAMPLES = 256  # (MC, estimate) pairs kept in bias.json for a scatter plot elsewhere
FIGSIZE = (10.0, 4.0)
DPI = 100


class AnalysisError(ValueError):
    """Bad input to an analysis (one line)."""


# --------------------------------------------------------------------------- estimates
@torch.no_grad()
def lower_bound_estimate(
    wm: WorldModel, obs: torch.Tensor, horizon: int, gamma: float, classifier_coef: float
) -> torch.Tensor:
    """The paper's K-step lower bound L^K at each state, evaluated with means: obs (N, D) -> (N,).

    z_0 is the encoder mean, a_t = pi(z_t) the deterministic action, z_{t+1} the latent
    model's mean (the deterministic policy of the bias protocol):
    sum_{t<K} gamma^t [r(z_t, a_t) + c (logit1 - logit0)(z_t, a_t, z_{t+1})]
    + gamma^K min(Q1, Q2)(z_K, pi(z_K)). The loop runs over the K steps, not over states.
    """
    if horizon < 1:
        raise AnalysisError(f"horizon must be at least 1, got {horizon}")
    z, _ = wm.encode(obs)
    estimate = torch.zeros(obs.shape[:-1], dtype=torch.float32, device=obs.device)
    discount = 1.0
    for _ in range(horizon):
        a = wm.pi(z)
        z_next, _ = wm.next(z, a)
        logits = wm.logits(z, a, z_next)
        step = wm.reward(z, a).squeeze(-1) + classifier_coef * (logits[..., 1] - logits[..., 0])
        estimate = estimate + discount * step
        discount *= gamma
        z = z_next
    value = wm.q(z, wm.pi(z)).min(0).values.squeeze(-1)
    return estimate + discount * value


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
    """Model-mean unroll: z0 (..., Z), actions (T, ..., A) -> latents (T+1, ..., Z), [0] = z0."""
    latents = [z0]
    for a in actions:
        latents.append(wm.next(latents[-1], a)[0])
    return torch.stack(latents)


# ---------------------------------------------------------------------------- episodes
@dataclass(frozen=True)
class Episode:
    """One episode of the deterministic policy: obs (T+1, D), actions (T, A), rewards (T,)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool

    @property
    def length(self) -> int:
        return len(self.rewards)


def run_episode(agent: AlmAgent, env: gym.Env, seed: int, max_steps: int | None = None) -> Episode:
    """Deterministic policy from ``reset(seed=seed)`` until the episode ends (or ``max_steps``)."""
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards = [obs], [], []
    terminated = truncated = False
    while not (terminated or truncated) and (max_steps is None or len(actions) < max_steps):
        action = agent.act(obs, 0.0, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
    return Episode(
        obs=np.asarray(observations, dtype=np.float32),
        actions=np.asarray(actions, dtype=np.float32).reshape(len(actions), -1),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminated=bool(terminated),
        truncated=bool(truncated),
    )


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
            episode = run_episode(agent, env, seed + len(lengths))
            keep = min(episode.length, max_start_steps)
            obs_parts.append(episode.obs[:keep])
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
        lower_bound_estimate(agent.wm, obs, cfg.agent.seq_len, gamma, cfg.agent.classifier_coef)
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
            "accuracy_threshold": ACCURACY_THRESHOLD,
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
            f"stays within relative error {ACCURACY_THRESHOLD} for "
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
        whole = run_episode(agent, env, seed, max_steps=start + horizon)
    finally:
        env.close()
    if whole.length <= start:
        raise AnalysisError(f"the episode ended after {whole.length} steps, before start={start}")
    episode = Episode(
        obs=whole.obs[start:],
        actions=whole.actions[start:],
        rewards=whole.rewards[start:],
        terminated=whole.terminated,
        truncated=whole.truncated,
    )
    obs = torch.as_tensor(episode.obs, device=agent.device)
    actions = torch.as_tensor(episode.actions, device=agent.device)
    with torch.no_grad():
        true = agent.wm.encode(obs)[0]  # (T+1, Z)
        predicted = latent_unroll(agent.wm, true[0], actions)  # (T+1, Z)
    true_np = true.cpu().double().numpy()
    pred_np = predicted.cpu().double().numpy()
    errors = np.linalg.norm(pred_np - true_np, axis=-1)
    norm_mean = float(np.linalg.norm(true_np, axis=-1).mean())
    relative = errors / max(norm_mean, 1e-12)
    off = np.flatnonzero(~(relative <= ACCURACY_THRESHOLD))  # NaN counts as off
    first_accurate = int(off[0]) - 1 if len(off) else episode.length
    c = min(coords, true_np.shape[-1])
    return RolloutResult(
        env=cfg.env,
        horizon=horizon,
        steps=episode.length,
        ended_early=episode.length < horizon,
        observations=episode.obs,
        actions=episode.actions,
        true_latents=true_np,
        predicted_latents=pred_np,
        errors=errors,
        relative_errors=relative,
        latent_norm_mean=norm_mean,
        first_accurate_steps=max(first_accurate, 0),
        true_coords=true_np[:, :c],
        predicted_coords=pred_np[:, :c],
    )


# ------------------------------------------------------------------------------- plots
def plot_bias(result: BiasResult, out: str | Path) -> Path:
    """Scatter of estimate vs MC return (with y = x) and a histogram of the normalised bias."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=FIGSIZE)
    try:
        left.scatter(result.mc_returns, result.estimates, s=6, alpha=0.5)
        low = float(min(result.mc_returns.min(), result.estimates.min()))
        high = float(max(result.mc_returns.max(), result.estimates.max()))
        left.plot([low, high], [low, high], "k--", linewidth=1, label="y = x")
        left.set_xlabel("Monte-Carlo return")
        left.set_ylabel(f"estimate of L^{result.horizon}")
        left.set_title(f"{result.env}: {result.n_states} states")
        left.legend(loc="upper left")
        finite = result.normalized_bias[np.isfinite(result.normalized_bias)]
        if len(finite):
            right.hist(finite, bins=40)
        right.axvline(0.0, color="k", linestyle="--", linewidth=1)
        right.set_xlabel("normalised bias (estimate - MC) / |mean MC|")
        right.set_ylabel("states")
        right.set_title(
            f"mean {result.normalized_bias_mean:.3f}, std {result.normalized_bias_std:.3f}"
        )
        fig.tight_layout()
        return save_figure(fig, out, dpi=DPI)
    finally:
        plt.close(fig)


def plot_rollout(result: RolloutResult, out: str | Path) -> Path:
    """Left: latent coordinates over steps, true solid vs predicted dashed; right: L2 error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(result.steps + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=FIGSIZE)
    try:
        for i in range(result.true_coords.shape[1]):
            color = f"C{i}"
            left.plot(steps, result.true_coords[:, i], color=color, label=f"z[{i}] encoder")
            left.plot(
                steps,
                result.predicted_coords[:, i],
                color=color,
                linestyle="--",
                label=f"z[{i}] model",
            )
        left.set_xlabel("step")
        left.set_ylabel("latent coordinate")
        left.set_title(f"{result.env}: encoder (solid) vs model unroll (dashed)")
        left.legend(fontsize="small")
        right.plot(steps, result.errors)
        right.set_xlabel("step")
        right.set_ylabel("L2 error of predicted latent")
        right.set_title(
            f"relative error <= {ACCURACY_THRESHOLD} for {result.first_accurate_steps} steps"
        )
        fig.tight_layout()
        return save_figure(fig, out, dpi=DPI)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------- checkpoint -> report
def default_out_dir(source: str | Path) -> Path:
    """``<run_dir>/analysis``; a checkpoint file's run dir is two levels up."""
    return resolve_checkpoint(source)[1] / "analysis"


def _load(source: str | Path, device: str) -> tuple[AlmAgent, RunConfig, dict[str, Any]]:
    try:
        resolve_device(device)
    except (ValueError, RuntimeError) as exc:
        raise AnalysisError(str(exc)) from None
    agent, cfg, state = load_agent(source, device)
    updates = state.get("counters", {}).get("updates")
    path, _ = resolve_checkpoint(source)
    meta = {"checkpoint": str(path), "updates": updates}
    return agent, cfg, meta


def _write_report(
    payload: dict[str, Any], result: Any, plot: Any, out_dir: Path, name: str
) -> dict[str, Path]:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AnalysisError(f"cannot create '{out_dir}': {exc.strerror}") from None
    json_path, png_path = out_dir / f"{name}.json", out_dir / f"{name}.png"
    payload["files"] = {"json": str(json_path), "png": str(png_path)}
    write_text_atomic(json_path, json.dumps(payload, indent=2) + "\n")
    plot(result, png_path)
    return {"json": json_path, "png": png_path}


def analyze_bias(
    source: str | Path,
    out_dir: str | Path | None = None,
    *,
    device: str = "cpu",
    episodes: int | None = None,
    max_start_steps: int = 350,
    min_states: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Path], BiasResult]:
    """Bias analysis of a run dir or checkpoint; writes bias.json + bias.png.

    Returns (the JSON payload, {"json": path, "png": path}, the result).
    """
    _check_bias_args(episodes, max_start_steps, min_states)  # fail before loading anything
    agent, cfg, meta = _load(source, device)
    result = bias_analysis(agent, cfg, episodes, max_start_steps, min_states, seed)
    payload = {**meta, "seed": seed, **result.as_dict()}
    out = Path(out_dir) if out_dir is not None else default_out_dir(source)
    return payload, _write_report(payload, result, plot_bias, out, "bias"), result


def analyze_rollout(
    source: str | Path,
    out_dir: str | Path | None = None,
    *,
    device: str = "cpu",
    horizon: int = 50,
    seed: int = 0,
    coords: int = 3,
    start: int = 0,
) -> tuple[dict[str, Any], dict[str, Path], RolloutResult]:
    """Latent-model rollout analysis of a run dir or checkpoint; writes rollout.json + .png.

    Returns (the JSON payload, {"json": path, "png": path}, the result).
    """
    if horizon < 1:  # fail before loading anything
        raise AnalysisError(f"horizon must be at least 1, got {horizon}")
    agent, cfg, meta = _load(source, device)
    result = rollout_analysis(agent, cfg, horizon, seed, coords, start)
    payload = {**meta, "seed": seed, "start": start, **result.as_dict()}
    out = Path(out_dir) if out_dir is not None else default_out_dir(source)
    return payload, _write_report(payload, result, plot_rollout, out, "rollout"), result
