"""The losses of ALM as pure functions of tensors and the ``WorldModel``.

Each returns a frozen dataclass whose ``loss`` carries the graph and whose other fields are
detached tensors for logging (no host sync). Which parameters a loss updates is decided by
the caller (the agent differentiates each loss only with respect to its own group), so a
loss never needs to freeze anything. Notation: S seeds, B batch, K sequence length, Z latent,
A action. Every tensor leads with the seed dim, and every loss and logged value is (S,):
seed s's entry is a mean over seed s's batch alone (``seed_mean``). No function here reduces
over seeds, so S agents' losses are S independent losses computed at once.

Adding a loss term: write it here as a pure function returning a frozen dataclass, add it
to its parameter group's loss in ``AlmAgent._update`` (core/agent.py) and log it there
under a key that exists at every update, zero when switched off: the CUDA graph
(core/updater.py) and the fused update (core/fused.py) freeze the set of metric keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from alm_offline.config import BC_INDEXES, BcIndex, EncoderObjective
from alm_offline.core.networks import WorldModel, rsample, sample_action, seed_mean


# ----------------------------------------------------------------------------- maths
def _kl_terms(
    mean_p: torch.Tensor, std_p: torch.Tensor, mean_q: torch.Tensor, std_q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per dim: (std_p / std_q)^2 and ((mean_p - mean_q) / std_q)^2, each (..., Z)."""
    return (std_p / std_q).pow(2), ((mean_p - mean_q) / std_q).pow(2)


def gaussian_kl(
    mean_p: torch.Tensor, std_p: torch.Tensor, mean_q: torch.Tensor, std_q: torch.Tensor
) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians, summed over the last dim: (..., Z) -> (...)."""
    var_ratio, mean_term = _kl_terms(mean_p, std_p, mean_q, std_q)
    return 0.5 * (var_ratio + mean_term - 1.0 - var_ratio.log()).sum(-1)


def gaussian_kl_split(
    mean_p: torch.Tensor, std_p: torch.Tensor, mean_q: torch.Tensor, std_q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``gaussian_kl`` as its two parts, each summed over the last dim: (..., Z) -> (...).

    The mean part 0.5 ((mean_p - mean_q) / std_q)^2 grows with the distance between the means
    in units of q's std; the spread part 0.5 (r - 1 - log r), r = (std_p / std_q)^2, is zero
    when the stds agree. Their sum is ``gaussian_kl``.
    """
    var_ratio, mean_term = _kl_terms(mean_p, std_p, mean_q, std_q)
    return 0.5 * mean_term.sum(-1), 0.5 * (var_ratio - 1.0 - var_ratio.log()).sum(-1)


def classifier_reward(logits: torch.Tensor) -> torch.Tensor:
    """log(C / (1 - C)) of a two-logit classifier = logit[1] - logit[0]: (..., 2) -> (...)."""
    return logits[..., 1] - logits[..., 0]


def lambda_returns(
    rewards: torch.Tensor,
    next_values: torch.Tensor,
    gamma: float,
    lambda_: float,
    continues: torch.Tensor | None = None,
) -> torch.Tensor:
    """TD(lambda) returns over K imagined steps: (S, K, ...) x2 -> (S, K, ...).

    ``next_values[:, t]`` is the value of the state after step t; the last one bootstraps:
    R_{K-1} = r_{K-1} + g V_K and R_t = r_t + g ((1 - lambda) V_{t+1} + lambda R_{t+1}).
    ``continues`` (S, K, ...): c_t, the probability that step t does not end the episode;
    everything after step t is then weighed by it: R_t = r_t + g c_t ((1 - lambda) V_{t+1}
    + lambda R_{t+1}) (an absorbing terminal state earns nothing). None: no step ends it.
    """
    returns = []
    last = next_values[:, -1]
    for t in reversed(range(rewards.shape[1])):
        ahead = (1.0 - lambda_) * next_values[:, t] + lambda_ * last
        if continues is not None:
            ahead = continues[:, t] * ahead
        last = rewards[:, t] + gamma * ahead
        returns.append(last)
    return torch.stack(returns[::-1], dim=1)


def survival_weights(continues: torch.Tensor, gamma: float) -> torch.Tensor:
    """g^t prod_{i<t} c_i: (S, K, ...) -> (S, K, ...), the weight of imagined step t's
    lambda-return in the actor's loss (the chance that the rollout is still alive at t)."""
    alive = torch.cumprod(torch.cat([torch.ones_like(continues[:, :1]), continues[:, :-1]], 1), 1)
    powers = gamma ** torch.arange(continues.shape[1], device=continues.device)
    return powers.view(1, -1, *([1] * (continues.dim() - 2))) * alive


def termination_loss(
    wm: WorldModel, z: torch.Tensor, action: torch.Tensor, terminated: torch.Tensor
) -> TerminationTerms:
    """Binary cross-entropy of p(end | z, a) to the real flags: z (S, B, Z), action (S, B, A),
    terminated (S, B) in {0, 1}. In the bound it is the termination flag's share of the
    model's KL to the (exact) posterior: -log p_model(d_t | z_t, a_t)."""
    logits = wm.termination_logit(z, action)
    per_row = F.binary_cross_entropy_with_logits(logits, terminated, reduction="none")
    bce = seed_mean(per_row)
    predicted = seed_mean(torch.sigmoid(logits.detach()))
    return TerminationTerms(loss=bce, cross_entropy=bce.detach(), predicted=predicted)


@dataclass(frozen=True)
class TerminationTerms:
    """The termination head's cross-entropy to the real flags, and its mean prediction."""

    loss: torch.Tensor
    cross_entropy: torch.Tensor
    predicted: torch.Tensor


def actor_step_weights(gamma: float, lambda_: float, horizon: int) -> torch.Tensor:
    """The weight of imagined step j's reward in ``actor_svg_loss``: (K,).

    The loss is -mean_t g^t R^lambda_t, and r_j enters R^lambda_t (t <= j) with (g lambda)^(j-t),
    so step j weighs g^j (sum_{i<=j} lambda^i) / K: it rises with j for lambda near 1 where the
    bound's own weight, g^j, falls. A closed form for the docs and tests; the loss itself
    goes through ``lambda_returns``.
    """
    steps = torch.arange(horizon, dtype=torch.float64)
    lambda_sums = torch.cumsum(torch.as_tensor(lambda_, dtype=torch.float64) ** steps, 0)
    return (gamma**steps * lambda_sums / horizon).float()


def bc_rollout_steps(index: BcIndex | str) -> slice:
    """The rollout steps (of z_0..z_K, a_0..a_K) whose actions carry the BC term, one per
    imagined step t = 0..K-1: ``"t"`` a_0..a_{K-1} at z_0..z_{K-1} (a_K gets none);
    ``"t+1"`` a_1..a_K at z_1..z_K, App. A.7's indexing (step t's term is at a_{t+1})."""
    if index not in BC_INDEXES:
        raise ValueError(f"bc index must be one of {', '.join(BC_INDEXES)}, got {index!r}")
    return slice(0, -1) if index == BcIndex.T else slice(1, None)


def policy_entropy(std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian policy: (..., A) std -> (...)."""
    return (std.log() + 0.5 * math.log(2.0 * math.pi * math.e)).sum(-1)


def log_shift_reward(reward: torch.Tensor, shift: float) -> torch.Tensor:
    """App. A.8: a (log(r + a) - log a) = a log(1 + r / a), ~ r for |r| << a. Any shape."""
    return shift * torch.log1p(reward / shift)


def gaussian_log_prob(
    x: torch.Tensor, mean: torch.Tensor, std: float | torch.Tensor
) -> torch.Tensor:
    """log N(x; mean, diag(std^2)), summed over the last dim: (..., A) -> (...)."""
    std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device).expand_as(mean)
    z = (x - mean) / std
    return (-0.5 * z.pow(2) - std.log() - 0.5 * math.log(2.0 * math.pi)).sum(-1)


def behaviour_log_ratio(
    action: torch.Tensor,
    behaviour_mean: torch.Tensor,
    behaviour_std: torch.Tensor,
    policy_mean: torch.Tensor,
    policy_std: float | torch.Tensor,
) -> torch.Tensor:
    """App. A.7's behaviour-cloning term at one step: log pi_b(a | z) - log pi_phi(a | z).

    All (..., A) -> (...). With a ~ pi_phi its expectation is -KL(pi_phi || pi_b), so a
    policy that maximises it stays where the behaviour policy puts mass.
    """
    return gaussian_log_prob(action, behaviour_mean, behaviour_std) - gaussian_log_prob(
        action, policy_mean, policy_std
    )


# ---------------------------------------------------------------------------- losses
@dataclass(frozen=True)
class ModelBoundTerms:
    """Encoder + model loss (Eq. 7, negated) and its parts, each a per-seed batch mean (S,).

    ``latents`` (S, K, B, Z) are z_0 ~ e(.|s_0) and the model's z_1..z_{K-1}, with their graph:
    the latents the behaviour-cloning term (App. A.7) is taken along.
    """

    loss: torch.Tensor
    kl: torch.Tensor  # mean over steps of KL(m || e_targ)
    reward: torch.Tensor  # mean over steps of r(z_t, a_t)
    value: torch.Tensor  # min(Q1, Q2)(z_K, pi(z_K))
    reconstruction: torch.Tensor  # mean over states of ||d(z) - s||^2 (0 unless that ablation)
    latents: torch.Tensor


def model_bound_loss(
    wm: WorldModel,
    obs: torch.Tensor,
    action: torch.Tensor,
    *,
    std: float | torch.Tensor,
    stddev_clip: float,
    kl_coef: float = 1.0,
    include_value: bool = True,
    objective: EncoderObjective | str = EncoderObjective.ALM,
    terminated: torch.Tensor | None = None,
) -> ModelBoundTerms:
    """-(sum_t [r(z_t, a_t) - KL(m(.|z_t, a_t) || e_targ(.|s_{t+1}))] + Q(z_K, pi(z_K))).

    obs: (S, K+1, B, D) real observations; action: (S, K, B, A) real actions. z_0 ~ e(.|s_0) and
    z_{t+1} ~ m(.|z_t, a_t) (rsample). Undiscounted over t, as the reference code.

    Ablations (Sec. 5.3, App. E): ``kl_coef`` scales the KL term (0 = no KL);
    ``include_value=False`` drops Q(z_K); ``objective="reconstruction"`` replaces the reward
    and value terms by sum_t ||d(z_t) - s_t||^2 with z_t ~ e(.|s_t) (t = 0..K): encoder and
    model then maximise likelihood instead of the return bound (Fig. 15).

    ``terminated`` (S, K, B): the real sequences' terminal flags. A sequence reaches a
    terminal only at its last step (sequences never cross an episode's end); its return
    stops there, so Q(z_K) is dropped for it: the bound's value term is (1 - d_{K-1}) Q(z_K).
    None: no mask (the paper's infinite-horizon bound).
    """
    steps = action.shape[1]
    aligned = objective == EncoderObjective.ALM
    with torch.no_grad():
        target_mean, target_std = wm.encode_target(obs[:, 1:])  # (S, K, B, Z)
    z = rsample(*wm.encode(obs[:, 0]))
    zeros = torch.zeros(obs.shape[0], device=obs.device)
    kl_sum, reward_sum, recon = zeros, zeros, zeros
    per_sample = torch.zeros(obs.shape[0], obs.shape[2], device=obs.device)  # (S, B)
    if not aligned:  # reconstruct every real state from its own encoder sample
        later = rsample(*wm.encode(obs[:, 1:]))
        encoded = torch.cat([z.unsqueeze(1), later], dim=1)  # (S, K+1, B, Z)
        errors = (wm.decode(encoded) - obs).pow(2).sum(-1)  # (S, K+1, B)
        per_sample = per_sample + errors.sum(1)
        recon = seed_mean(errors.detach())
    latents = []
    # z_K is drawn only when Q(z_K) uses it: a draw nothing uses would be dropped from a
    # compiled update's graph, and the fused and eager updates would part RNG streams
    with_value = aligned and include_value
    for t in range(steps):
        latents.append(z)
        next_mean, next_std = wm.next(z, action[:, t])
        kl = gaussian_kl(next_mean, next_std, target_mean[:, t], target_std[:, t])  # (S, B)
        per_sample = per_sample + kl_coef * kl
        kl_sum = kl_sum + seed_mean(kl.detach())
        if aligned:
            reward = wm.reward(z, action[:, t]).squeeze(-1)
            per_sample = per_sample - reward
            reward_sum = reward_sum + seed_mean(reward.detach())
        if t + 1 < steps or with_value:
            z = rsample(next_mean, next_std)
    value = zeros
    if with_value:
        with torch.no_grad():
            final_action = sample_action(*wm.policy(z, std), stddev_clip)
        q_final = wm.q(z, final_action).min(0).values.squeeze(-1)  # (S, B)
        if terminated is not None:
            q_final = q_final * (1.0 - terminated[:, -1])
        per_sample = per_sample - q_final
        value = seed_mean(q_final.detach())
    return ModelBoundTerms(
        loss=seed_mean(per_sample),
        kl=kl_sum / steps,
        reward=reward_sum / steps,
        value=value,
        reconstruction=recon,
        latents=torch.stack(latents, dim=1),
    )


@dataclass(frozen=True)
class BehaviourCloningTerms:
    """The likelihood form of offline ALM's behaviour-cloning term (App. A.7)."""

    loss: torch.Tensor
    per_step: torch.Tensor  # mean over steps and batch of -log pi_phi(a_t | z_t)


def likelihood_bc_loss(
    wm: WorldModel, latents: torch.Tensor, action: torch.Tensor, std: float | torch.Tensor
) -> BehaviourCloningTerms:
    """sum_t -log pi_phi(a_t | z_t) of the data's actions, batch mean (S,): latents (S, K, B, Z),
    action (S, K, B, A).

    pi_phi = N(pi(z), s^2 I) with the policy's own std s (the exploration schedule's, or the
    learned one), so -log pi_phi(a | z) = ||a - pi(z)||^2 / (2 s^2) + A log(s sqrt(2 pi)):
    unit weight is the bound's own scale. Along the model latents of ``model_bound_loss``
    the gradient reaches the encoder and the model through z_t and the actor through pi;
    the caller picks which it applies by passing the latents with or without their graph.
    """
    mean, policy_std = wm.policy(latents, std)
    per_step = -gaussian_log_prob(action, mean, policy_std)  # (S, K, B)
    return BehaviourCloningTerms(
        loss=seed_mean(per_step.sum(1)), per_step=seed_mean(per_step.detach())
    )


@dataclass(frozen=True)
class BehaviourPolicyTerms:
    """Maximum likelihood of the behaviour policy pi_b on the data (App. A.7's pi_b)."""

    loss: torch.Tensor
    nll: torch.Tensor  # batch mean of -log pi_b(a | z) on real transitions


def behaviour_policy_loss(
    wm: WorldModel, z: torch.Tensor, action: torch.Tensor
) -> BehaviourPolicyTerms:
    """-log pi_b(a | z), batch mean (S,): z (S, B, Z) latents of real states, action (S, B, A)
    the data's actions. The latents are detached: pi_b fits the data, it shapes no encoder."""
    mean, std = wm.behaviour_policy(z.detach())
    nll = seed_mean(-gaussian_log_prob(action, mean, std))
    return BehaviourPolicyTerms(loss=nll, nll=nll.detach())


@dataclass(frozen=True)
class RewardTerms:
    """Reward regression (Eq. 11)."""

    loss: torch.Tensor
    mse: torch.Tensor


def reward_loss(
    wm: WorldModel, z: torch.Tensor, action: torch.Tensor, reward: torch.Tensor
) -> RewardTerms:
    """MSE of r(z, a) to the env's reward: z (S, B, Z), action (S, B, A), reward (S, B)."""
    mse = seed_mean((wm.reward(z, action).squeeze(-1) - reward).pow(2))
    return RewardTerms(loss=mse, mse=mse.detach())


@dataclass(frozen=True)
class ClassifierTerms:
    """Cross-entropy of the real-vs-model classifier (Eq. 9)."""

    loss: torch.Tensor
    cross_entropy: torch.Tensor
    accuracy: torch.Tensor


def classifier_loss(
    wm: WorldModel,
    z: torch.Tensor,
    action: torch.Tensor,
    z_next: torch.Tensor,
    z_next_model: torch.Tensor,
) -> ClassifierTerms:
    """z, z_next (encoder samples), z_next_model (model sample): (S, B, Z); action (S, B, A).

    A random half of each seed's rows gets z_next replaced by the model's sample and label 0
    (fake); the rest keep the encoder's z_next and label 1.
    """
    seeds, batch = z.shape[:2]
    # a uniformly random half of the rows (argsort of uniforms: randperm, CUDA-graph safe)
    fake_rows = torch.rand(seeds, batch, device=z.device).argsort(-1)[:, : batch // 2]
    is_fake = torch.zeros(seeds, batch, dtype=torch.bool, device=z.device)
    is_fake = is_fake.scatter(1, fake_rows, True)
    mixed_next = torch.where(is_fake.unsqueeze(-1), z_next_model, z_next)
    labels = (~is_fake).long()
    logits = wm.logits(z, action, mixed_next)  # (S, B, 2)
    per_row = F.cross_entropy(logits.reshape(-1, 2), labels.reshape(-1), reduction="none")
    cross_entropy = seed_mean(per_row.reshape(seeds, batch))
    accuracy = seed_mean((logits.detach().argmax(-1) == labels).float())
    return ClassifierTerms(
        loss=cross_entropy, cross_entropy=cross_entropy.detach(), accuracy=accuracy
    )


@dataclass(frozen=True)
class CriticTerms:
    """TD loss of the twin critic (Eq. 10) and Q statistics."""

    loss: torch.Tensor
    q_mean: torch.Tensor
    q_std: torch.Tensor
    target_mean: torch.Tensor


def critic_loss(
    wm: WorldModel,
    z: torch.Tensor,
    action: torch.Tensor,
    reward: torch.Tensor,
    z_next: torch.Tensor,
    terminated: torch.Tensor,
    *,
    std: float | torch.Tensor,
    stddev_clip: float,
    gamma: float,
    entropy_bonus: float = 0.0,
) -> CriticTerms:
    """Mean of both critics' MSE to r + g (1 - terminated) min(Q1', Q2')(z', a'), a' ~ pi(z').

    z, z_next: (S, B, Z) target-encoder samples; action (S, B, A); reward, terminated (S, B).
    ``entropy_bonus`` alpha > 0 (SAC-style ablation) adds alpha H(pi(.|z')) to the bootstrap.
    """
    with torch.no_grad():
        next_mean, next_std = wm.policy(z_next, std)
        next_action = sample_action(next_mean, next_std, stddev_clip)
        next_q = wm.q_target(z_next, next_action).min(0).values.squeeze(-1)
        if entropy_bonus > 0:
            next_q = next_q + entropy_bonus * policy_entropy(next_std)
        target = reward + gamma * (1.0 - terminated) * next_q
    q = wm.q(z, action).squeeze(-1).transpose(0, 1)  # (S, 2, B)
    loss = seed_mean((q - target.unsqueeze(1)).pow(2))
    q_detached = q.detach().reshape(q.shape[0], -1)
    return CriticTerms(
        loss=loss,
        q_mean=q_detached.mean(1),
        q_std=q_detached.std(1),
        target_mean=seed_mean(target),
    )


@dataclass(frozen=True)
class ActorTerms:
    """Policy loss (Eq. 8 with lambda-returns, negated) and its parts."""

    loss: torch.Tensor
    imagined_reward: torch.Tensor
    classifier_reward: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor  # mean policy entropy along the rollout (0 without the bonus)
    # mean over the rollout of log pi_phi(a | z) - log pi_b(a | z), a ~ pi_phi: the estimate of
    # KL(pi_phi || pi_b) the behaviour-kl term penalises (0 without it)
    behaviour_kl: torch.Tensor
    # mean over the rollout of c_t = 1 - p(end | z_t, a_t) (1 without termination)
    continuation: torch.Tensor


def _rollout_log_ratio(
    wm: WorldModel,
    latents: torch.Tensor,
    actions: torch.Tensor,
    policy_mean: torch.Tensor,
    policy_std: float | torch.Tensor,
) -> torch.Tensor:
    """``behaviour_log_ratio`` along a rollout: latents (S, K, B, Z), actions and the
    policy's means (S, K, B, A) -> (S, K, B), pi_b from ``wm.behaviour_policy``."""
    return behaviour_log_ratio(actions, *wm.behaviour_policy(latents), policy_mean, policy_std)


class Rollout(NamedTuple):
    """A K-step imagined rollout of the policy through the model (``imagine``)."""

    latents: torch.Tensor  # (S, K+1, B, Z): z_0 (the start) .. z_K
    actions: torch.Tensor  # (S, K+1, B, A): a_0 .. a_K, each sampled at its latent
    means: list[torch.Tensor]  # K policy means (S, B, A) at z_0..z_{K-1}, when kept
    stds: list[torch.Tensor | float]  # their stds, when kept
    entropies: list[torch.Tensor]  # K entropies (S, B), when asked for
    final_mean: torch.Tensor  # (S, B, A) the policy's mean at z_K
    final_std: torch.Tensor | float


def imagine(
    wm: WorldModel,
    z: torch.Tensor,
    horizon: int,
    std: float | torch.Tensor,
    stddev_clip: float,
    keep_policy: bool,
    entropy: bool,
) -> Rollout:
    """Roll the policy out ``horizon`` steps from z (S, B, Z) through the model: a_t ~
    pi(z_t) on the detached latent (noise clipped at ``stddev_clip``), z_{t+1} ~ m(z_t,
    a_t) by rsample; then a_K at z_K. ``keep_policy`` keeps each step's mean and std,
    ``entropy`` each step's policy entropy."""
    latents, actions, entropies, means, stds = [z], [], [], [], []
    for _ in range(horizon):
        mean, a_std = wm.policy(z.detach(), std)
        if keep_policy:
            means.append(mean)
            stds.append(a_std)
        a = sample_action(mean, a_std, stddev_clip)
        if entropy:
            entropies.append(policy_entropy(a_std))
        z = rsample(*wm.next(z, a))
        actions.append(a)
        latents.append(z)
    final_mean, final_std = wm.policy(z.detach(), std)
    actions.append(sample_action(final_mean, final_std, stddev_clip))
    return Rollout(
        latents=torch.stack(latents, 1),
        actions=torch.stack(actions, 1),
        means=means,
        stds=stds,
        entropies=entropies,
        final_mean=final_mean,
        final_std=final_std,
    )


def _imagined_return_loss(
    wm: WorldModel,
    zs: torch.Tensor,
    acts: torch.Tensor,
    step_reward: torch.Tensor,
    gamma: float,
    lambda_: float,
    termination: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """-mean_t w_t R^lambda_t of a rollout's latents and actions (S, K+1, B, Z|A) and step
    rewards (S, K, B), bootstrapped by min(Q1, Q2)(z_{t+1}, a_{t+1}) on detached actions;
    w_t = g^t, or with ``termination`` the survival weights of c_t = 1 - p(end | z_t, a_t),
    which also weigh what follows each step. Returns the loss (S,), the bootstrap values
    (S, K, B) and c (S, K, B) or None."""
    next_value = wm.q(zs[:, 1:], acts[:, 1:].detach()).min(0).values.squeeze(-1)  # (S, K, B)
    continues = None
    if termination:
        continues = 1.0 - torch.sigmoid(wm.termination_logit(zs[:, :-1], acts[:, :-1]))
    returns = lambda_returns(step_reward, next_value, gamma, lambda_, continues)
    if continues is None:
        horizon = step_reward.shape[1]
        weights = gamma ** torch.arange(horizon, device=zs.device, dtype=returns.dtype)
        loss = -seed_mean(weights.unsqueeze(-1) * returns)
    else:
        loss = -seed_mean(survival_weights(continues.detach(), gamma) * returns)
    return loss, next_value, continues


def actor_svg_loss(
    wm: WorldModel,
    z: torch.Tensor,
    *,
    horizon: int,
    std: float | torch.Tensor,
    stddev_clip: float,
    gamma: float,
    lambda_: float,
    classifier_coef: float,
    entropy_bonus: float = 0.0,
    action_penalty: float = 0.0,
    behaviour_weight: float = 0.0,
    behaviour_index: BcIndex | str = BcIndex.T,
    termination: bool = False,
) -> ActorTerms:
    """-mean_t g^t R^lambda_t over a K-step imagined rollout from z (S, B, Z) with the policy.

    Per step reward r(z_t, a_t) + c (logit1 - logit0)(z_t, a_t, z_{t+1}); bootstrap
    min(Q1, Q2)(z_{t+1}, a_{t+1}). As in the reference code the policy sees detached
    latents, the classifier's z_{t+1} and the critic's actions are detached, so gradients
    reach the actions through the reward, the classifier and the model's rsample (SVG).
    ``classifier_coef`` = 0 removes the classifier term (Sec. 5.3); ``entropy_bonus`` alpha
    > 0 adds alpha H(pi(.|z_t)) to every step's reward (SAC-style ablation, Table 5);
    ``action_penalty`` > 0 adds its weight times the mean of pi(z_t)^2 over the rollout.

    ``behaviour_weight`` w > 0 (offline, App. A.7's behaviour-kl form) adds to step t's
    reward w [log pi_b(a | z) - log pi_phi(a | z)] at the rollout's own a ~ pi_phi: at (z_t,
    a_t) for ``behaviour_index="t"``, at (z_{t+1}, a_{t+1}) for ``"t+1"`` (the bound's
    indexing, ``bc_rollout_steps``). Through the lambda-returns step t's term weighs
    ``actor_step_weights(gamma, lambda_, K)[t]``, like its reward. pi_b
    (``wm.behaviour_policy``) is not trained here (its parameters are not the actor's).

    ``termination``: the model's p(end | z_t, a_t) (``wm.termination_logit``) weighs what
    follows each imagined step, c_t = 1 - p, in the lambda-returns (``lambda_returns``'
    ``continues``) and in each step's weight (``survival_weights``, no gradient); the
    actions get its gradient, so the actor learns to avoid predicted ends.
    """
    keep_policy = action_penalty > 0 or behaviour_weight > 0
    rollout = imagine(wm, z, horizon, std, stddev_clip, keep_policy, entropy_bonus > 0)
    zs, acts, means, stds = rollout.latents, rollout.actions, rollout.means, rollout.stds
    final_mean, final_std, entropies = rollout.final_mean, rollout.final_std, rollout.entropies
    reward = wm.reward(zs[:, :-1], acts[:, :-1]).squeeze(-1)  # (S, K, B)
    step_reward, bonus = reward, torch.zeros_like(reward)
    if classifier_coef > 0:
        bonus = classifier_reward(wm.logits(zs[:, :-1], acts[:, :-1], zs[:, 1:].detach()))
        step_reward = step_reward + classifier_coef * bonus  # (S, K, B)
    entropy = torch.zeros_like(reward)
    if entropy_bonus > 0:
        entropy = torch.stack(entropies, 1)  # (S, K, B)
        step_reward = step_reward + entropy_bonus * entropy
    log_ratio = torch.zeros_like(reward)
    if behaviour_weight > 0:
        steps = bc_rollout_steps(behaviour_index)
        # the schedule's std is every step's; a learned one is a tensor per step
        stds = torch.stack([*stds, final_std], 1)[:, steps] if wm.actor.learn_std else std
        log_ratio = _rollout_log_ratio(
            wm, zs[:, steps], acts[:, steps], torch.stack([*means, final_mean], 1)[:, steps], stds
        )
        step_reward = step_reward + behaviour_weight * log_ratio
    loss, next_value, continues = _imagined_return_loss(
        wm, zs, acts, step_reward, gamma, lambda_, termination
    )
    if action_penalty > 0:
        loss = loss + action_penalty * seed_mean(torch.stack(means, 1).pow(2))
    return ActorTerms(
        loss=loss,
        imagined_reward=seed_mean(reward.detach()),
        classifier_reward=seed_mean(bonus.detach()),
        value=seed_mean(next_value.detach()),
        entropy=seed_mean(entropy.detach()),
        behaviour_kl=-seed_mean(log_ratio.detach()),
        continuation=(
            seed_mean(continues.detach())
            if continues is not None
            else torch.ones(z.shape[0], device=z.device)
        ),
    )


def td3_q_objective(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """What a TD3 actor maximises, per seed: (S, B) -> (S,). alpha = 0: mean Q. alpha > 0:
    TD3+BC's alpha Q / mean|Q| (Fujimoto & Gu 2021), the batch's mean |Q| detached, so a
    behaviour term beside it keeps its weight whatever the scale of the returns."""
    if alpha <= 0:
        return seed_mean(q)
    return alpha * seed_mean(q) / seed_mean(q.detach().abs()).clamp_min(1e-6)


def actor_td3_loss(
    wm: WorldModel,
    z: torch.Tensor,
    *,
    std: float | torch.Tensor = 0.0,
    stddev_clip: float | None = None,
    behaviour_weight: float = 0.0,
    q_alpha: float = 0.0,
) -> ActorTerms:
    """TD3's model-free actor loss -Q1(z, pi(z)) on latents z (S, B, Z) of real states
    (Fig. 5c). No model rollout, reward head or classifier: only the critic judges the policy.
    ``q_alpha`` > 0 weighs Q as TD3+BC does (``td3_q_objective``); 0 keeps the plain -Q.

    ``behaviour_weight`` w > 0 adds the behaviour-kl term at the one step there is,
    -w [log pi_b(a | z) - log pi_phi(a | z)] with a ~ pi_phi(z) (the same term as
    ``actor_svg_loss``'s, without the rollout: the no-model ablation of that form).
    """
    z = z.detach()
    mean = wm.pi(z)
    q1 = wm.q(z, mean)[0].squeeze(-1)  # (S, B)
    zero = torch.zeros(z.shape[0], device=z.device)
    loss, behaviour_kl = -td3_q_objective(q1, q_alpha), zero
    if behaviour_weight > 0:
        mean, policy_std = wm.policy(z, std)
        action = sample_action(mean, policy_std, stddev_clip)
        ratio = behaviour_log_ratio(action, *wm.behaviour_policy(z), mean, policy_std)  # (S, B)
        loss = loss - behaviour_weight * seed_mean(ratio)
        behaviour_kl = -seed_mean(ratio.detach())
    return ActorTerms(
        loss=loss,
        imagined_reward=zero,
        classifier_reward=zero,
        value=seed_mean(q1.detach()),
        entropy=zero,
        behaviour_kl=behaviour_kl,
        continuation=zero + 1.0,
    )


# ------------------------------------------------------------------ the bound, evaluated
@torch.no_grad()
def lower_bound_estimate(
    wm: WorldModel, obs: torch.Tensor, horizon: int, gamma: float, classifier_coef: float
) -> torch.Tensor:
    """The K-step lower bound L^K at each state, evaluated with means: obs (S, N, D) -> (S, N).

    z_0 is the encoder mean, a_t = pi(z_t) the deterministic action, z_{t+1} the latent
    model's mean (the deterministic policy of the bias analysis, App. E):
    sum_{t<K} gamma^t [r(z_t, a_t) + c classifier_reward(z_t, a_t, z_{t+1})]
    + gamma^K min(Q1, Q2)(z_K, pi(z_K)). The loop runs over the K steps, not over states.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    z, _ = wm.encode(obs)
    estimate = torch.zeros(obs.shape[:-1], dtype=torch.float32, device=obs.device)
    discount = 1.0
    for _ in range(horizon):
        a = wm.pi(z)
        z_next, _ = wm.next(z, a)
        bonus = classifier_reward(wm.logits(z, a, z_next))
        estimate = estimate + discount * (wm.reward(z, a).squeeze(-1) + classifier_coef * bonus)
        discount *= gamma
        z = z_next
    value = wm.q(z, wm.pi(z)).min(0).values.squeeze(-1)
    return estimate + discount * value
