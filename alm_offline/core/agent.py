"""The ALM agent: networks, targets and optimisers; ``act`` and ``update(batch) -> metrics``.

The agent owns no env, buffer or logger. Online and offline training use the same class;
they differ only by ``AgentConfig.bc_weight`` (the behaviour-cloning term of App. A.7, in
the form ``bc_term`` names).

Seeds: one agent holds S independent seeds (``seeds``), each with its own weights, targets
and Adam moments, stacked along a leading dim (networks.py). Batches lead with the seed dim
too; an update is one computation for all seeds, with one optimiser step, each seed's
gradient clipped by its own norm; every loss and metric is (S,). One seed is S = 1.

One update (Algorithm 1, as the reference code orders it):
1. encoder + model on the K-step bound over real sequences;
2. reward + classifier, 3. critic, 4. actor, each on target-encoder latents of real
   transitions (the actor from imagined rollouts);
5. Polyak update of the target encoder and target critic.
Each loss is differentiated only with respect to its own parameter group
(``torch.autograd.grad``), so no parameter freezing is needed and no unused weight
gradients are computed. Metrics are detached tensors: nothing here syncs with the host.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from alm_offline.config import (
    ActorLoss,
    AgentConfig,
    BcIndex,
    BcTerm,
    Classifier,
    Encoder,
    EncoderObjective,
    Precision,
    Termination,
)
from alm_offline.core.fused import FusedUpdate, clip_and_adam_step, clip_coefficients
from alm_offline.core.losses import (
    actor_svg_loss,
    actor_td3_loss,
    behaviour_policy_loss,
    classifier_loss,
    critic_loss,
    likelihood_bc_loss,
    log_shift_reward,
    model_bound_loss,
    reward_loss,
    termination_loss,
)
from alm_offline.core.metrics import Metrics
from alm_offline.core.networks import WorldModel, per_seed, rsample, seed_generators
from alm_offline.core.replay import SequenceBatch, TransitionBatch


def exploration_std(cfg: AgentConfig, updates: int) -> float:
    """Linear schedule expl_std_start -> expl_std_end over expl_std_steps updates."""
    mix = min(max(updates / cfg.expl_std_steps, 0.0), 1.0)
    return (1.0 - mix) * cfg.expl_std_start + mix * cfg.expl_std_end


def adam_implementation(device: torch.device) -> dict[str, bool]:
    """Which Adam kernels to use (same maths): fused on the CPU (one pass per tensor, ~3x
    faster than foreach there); foreach + capturable on CUDA, where the step counts stay on
    the device so that a CUDA graph can hold the whole step."""
    if device.type == "cuda":
        return {"foreach": True, "fused": False, "capturable": True}
    return {"foreach": False, "fused": True, "capturable": False}


@dataclass(frozen=True)
class RealLatents:
    """Target-encoder Gaussians (S, B, Z) of a batch's states and next states, and the
    model's sample of z' (the classifier's fakes); no gradient."""

    z_mean: torch.Tensor
    z_std: torch.Tensor
    next_mean: torch.Tensor
    next_std: torch.Tensor
    z_model_next: torch.Tensor


@dataclass(frozen=True)
class Step:
    """A step of the update: its detached metrics, (S,) each."""

    metrics: Metrics


@dataclass(frozen=True)
class WorldStep(Step):
    """Step 1's metrics and the bound's latents (S, K, B, Z), with their graph."""

    latents: torch.Tensor


@dataclass(frozen=True)
class RewardStep(Step):
    """Step 2's metrics and the reward the critic learns (S, B): the env's, or shifted."""

    env_reward: torch.Tensor


def bc_weight_in_loss(cfg: AgentConfig) -> float:
    """The BC term's weight in the loss it joins: ``bc_weight``, or with
    ``bc_relative_to_kl`` that times the KL term's weight there (App. A.7's 1:1 at 1): c
    (``classifier_coef``) for behaviour-kl in the actor, ``kl_coef`` for likelihood."""
    if not cfg.bc_relative_to_kl:
        return cfg.bc_weight
    kl_weight = cfg.classifier_coef if BcTerm(cfg.bc_term) is BcTerm.BEHAVIOUR_KL else cfg.kl_coef
    return cfg.bc_weight * kl_weight


class AlmAgent:
    """ALM(K) on a ``WorldModel``, with one Adam optimiser per parameter group.

    ``seeds``: the seeds it trains (their generators draw each one's initial weights);
    None: one seed drawn from torch's global generator (an agent that loads its weights).
    ``fused``: run updates as one compiled graph (``fused.py``); None takes
    ``cfg.compile == "on"`` (training runs decide ``auto`` with ``fusion_decision``).
    ``fused_backend`` is torch.compile's backend for it (the suite traces with aot_eager).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        cfg: AgentConfig,
        device: torch.device | str = "cpu",
        *,
        seeds: Sequence[int] | None = None,
        fused: bool | None = None,
        fused_backend: str = "inductor",
    ) -> None:
        self.cfg = cfg
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.device = torch.device(device)
        # offline ALM's behaviour-kl form (App. A.7): a behaviour policy pi_b to stay near
        bc_term, precision = BcTerm(cfg.bc_term), Precision(cfg.precision)
        self.behaviour_kl = cfg.bc_weight > 0 and bc_term is BcTerm.BEHAVIOUR_KL
        self.likelihood_bc = cfg.bc_weight > 0 and bc_term is BcTerm.LIKELIHOOD
        self.termination = Termination(cfg.termination) is Termination.LEARNED
        self.bc_weight = bc_weight_in_loss(cfg)
        self.wm = WorldModel(
            obs_dim,
            action_dim,
            latent_dim=cfg.latent_dim,
            hidden_dim=cfg.hidden_dim,
            model_hidden_dim=cfg.model_hidden_dim,
            generators=None if seeds is None else seed_generators(seeds),
            identity_encoder=Encoder(cfg.encoder) is Encoder.IDENTITY,
            linear_classifier=Classifier(cfg.classifier) is Classifier.LINEAR,
            decoder=EncoderObjective(cfg.encoder_objective) is EncoderObjective.RECONSTRUCTION,
            learn_policy_std=cfg.entropy_bonus > 0,
            behaviour_policy=self.behaviour_kl,
            standardize_obs=cfg.obs_norm,
            termination_head=self.termination,
        ).to(self.device)
        self.num_seeds = self.wm.num_seeds
        self.groups = self.wm.parameter_groups()
        self.optimizers = {
            name: torch.optim.Adam(params, lr=cfg.lr, **adam_implementation(self.device))
            for name, params in self.groups.items()
        }
        self.autocast_dtype = torch.bfloat16 if precision is Precision.BF16 else None
        if self.device.type == "cuda":
            # tf32: fp32 matrix products on TF32 tensor cores (PyTorch's default before 1.12, so
            # the reference's on Ampere GPUs). A process-wide switch (torch has no per-module
            # one), so it is set either way: an fp32 agent made later does not inherit it.
            torch.backends.cuda.matmul.allow_tf32 = precision is Precision.TF32
        if fused is None:
            fused = cfg.compile == "on"
        self.fused_update = FusedUpdate(self.eager_update, fused_backend) if fused else None

    def set_observation_stats(
        self, observations: torch.Tensor | np.ndarray | Sequence[torch.Tensor]
    ) -> None:
        """With ``obs_norm``: standardise inputs by the mean and std over observations from
        here on: (N, D) for every seed (a shared dataset), or one (N_s, D) per seed (each
        seed's own replay); without it, nothing."""
        if not self.cfg.obs_norm:
            return
        if isinstance(observations, (torch.Tensor, np.ndarray)):
            observations = [observations] * self.num_seeds
        obs = [torch.as_tensor(o, dtype=torch.float32, device=self.device) for o in observations]
        if len(obs) != self.num_seeds:
            raise ValueError(f"{len(obs)} observation sets for {self.num_seeds} seeds")
        mean = torch.stack([o.mean(0) for o in obs])
        std = torch.stack([o.std(0) for o in obs])
        self.wm.set_observation_stats(mean, std)

    # ------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(
        self,
        obs: np.ndarray,
        std: float,
        deterministic: bool = False,
        latent_noise: torch.Tensor | None = None,
    ) -> np.ndarray:
        """obs (S, D) -> actions (S, A) in [-1, 1], seed s acting on row s; a one-seed agent
        also takes obs (D,) and returns (A,).

        Exploration: z ~ e(.|s), a = mean + std * noise (no noise clip), clamped; with the
        entropy-bonus ablation the policy's own std replaces ``std``.
        Deterministic: the policy's mean at the encoder's mean, or, given ``latent_noise``
        (S, Z) standard normals, at z = mean + std * noise (the reference implementation's
        evaluation).
        """
        single = np.ndim(obs) == 1
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        obs_t = obs_t.reshape(1, 1, -1) if single else obs_t.unsqueeze(1)  # (S, 1, D)
        if obs_t.shape[0] != self.num_seeds:
            raise ValueError(
                f"observations for {obs_t.shape[0]} seeds, the agent has {self.num_seeds}"
            )
        mean, z_std = self.wm.encode(obs_t)
        if deterministic:
            if latent_noise is not None:
                mean = mean + z_std * latent_noise.to(mean.device).reshape(mean.shape)
            action = self.wm.pi(mean)
        else:
            action_mean, action_std = self.wm.policy(rsample(mean, z_std), std)
            noise = torch.randn_like(action_mean) * action_std
            action = (action_mean + noise).clamp(-1.0, 1.0)
        out = action.squeeze(1).cpu().numpy()
        return out[0] if single else out

    def eval_actions(
        self, latent: str = "mean", seeds: Sequence[int] = (0,)
    ) -> Callable[[np.ndarray], np.ndarray]:
        """The deterministic policy of every seed at once, obs (S, D) -> actions (S, A).

        ``latent="mean"`` acts on the encoder's mean; ``"sample"`` on z ~ e(.|s), seed s's
        noise drawn from a generator seeded with ``seeds[s]`` (so an evaluation is
        reproducible, leaves the training RNG alone, and seed s's noise is its own).
        """
        if latent == "mean":
            return lambda obs: self.act(obs, 0.0, deterministic=True)
        if len(seeds) != self.num_seeds:
            raise ValueError(f"{len(seeds)} evaluation seeds for {self.num_seeds} agent seeds")
        generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        size = self.wm.latent_dim

        def act(obs: np.ndarray) -> np.ndarray:
            noise = torch.stack(
                [torch.randn(size, generator=g, device=self.device) for g in generators]
            )  # evaluation, not the update: one small draw per seed's own generator
            return self.act(obs, 0.0, deterministic=True, latent_noise=noise)

        return act

    def eval_policy(
        self, latent: str = "mean", seed: int = 0
    ) -> Callable[[np.ndarray], np.ndarray]:
        """A one-seed agent's deterministic policy obs (D,) -> action (A,) (``eval_actions``
        for S = 1)."""
        if self.num_seeds != 1:
            raise ValueError(f"eval_policy is for one seed; this agent has {self.num_seeds}")
        batched = self.eval_actions(latent, (seed,))
        return lambda obs: batched(np.asarray(obs)[None])[0]

    # ----------------------------------------------------------------- learning
    def _apply(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        """Gradient step of one group on the per-seed losses ``loss`` (S,); returns each
        seed's pre-clip gradient norm (S,).

        The gradient is the vector-Jacobian product with ones, so seed s's weights get the
        gradient of seed s's loss alone (no loss is summed over seeds), and each seed's is
        clipped to ``max_grad_norm`` by its own norm. Traced by the fused update, the clip
        and the Adam step are tensor ops in its graph; eagerly, the optimiser's own kernel.
        """
        params = self.groups[name]
        grads = torch.autograd.grad(loss, params, grad_outputs=torch.ones_like(loss))
        if torch.compiler.is_compiling():
            return clip_and_adam_step(params, grads, self.optimizers[name], self.cfg.max_grad_norm)
        norms, coef = clip_coefficients(grads, self.cfg.max_grad_norm)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad.mul_(per_seed(coef, grad))
        self.optimizers[name].step()
        return norms

    def update(
        self, seq: SequenceBatch, batch: TransitionBatch, std: float | torch.Tensor
    ) -> Metrics:
        """One update of every group. seq: K-step sequences; batch: transitions (B each).

        ``std`` may be a 0-d device tensor (CUDA graphs read it in place). With a fused
        update, every update after the first (which creates Adam's state) runs compiled.
        """
        if seq.action.shape[1] != self.cfg.seq_len:
            raise ValueError(
                f"sequences of {seq.action.shape[1]} steps, the agent's seq_len is "
                f"{self.cfg.seq_len}"
            )
        if seq.obs.shape[0] != self.num_seeds or batch.obs.shape[0] != self.num_seeds:
            raise ValueError(
                f"batches for {seq.obs.shape[0]} seeds, the agent has {self.num_seeds}"
            )
        fused = self.fused_update
        if fused is None or not self._has_adam_state():
            return self.eager_update(seq, batch, std)
        return fused(seq, batch, torch.as_tensor(std, dtype=torch.float32, device=self.device))

    def _has_adam_state(self) -> bool:
        return all(opt.state for opt in self.optimizers.values())

    @property
    def compiles_next_update(self) -> bool:
        """Whether the next ``update`` is the fused update's first call, which compiles it."""
        fused = self.fused_update
        return (
            fused is not None
            and fused.report is None
            and not fused.failed
            and self._has_adam_state()
        )

    def eager_update(
        self, seq: SequenceBatch, batch: TransitionBatch, std: float | torch.Tensor
    ) -> Metrics:
        """The update op by op, under the configured precision (what the fused update
        compiles; ``update`` runs it directly when the update is not fused).

        With ``precision=bf16`` the networks run under bf16 autocast; their outputs, the
        losses and the optimiser state stay fp32. Autocast's weight-cast cache is off: it
        would keep the bf16 copy of a weight made before that weight's optimiser step, so
        the later losses of the same update (reward, critic, actor) would see stale
        networks. Casting anew costs nothing measurable (``alm bench``, bf16).
        """
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
            cache_enabled=False,
        ):
            return self._update(seq, batch, std)

    def _update(
        self, seq: SequenceBatch, batch: TransitionBatch, std: float | torch.Tensor
    ) -> Metrics:
        """Algorithm 1, one update: its steps in the reference code's order. Each step
        differentiates its loss with respect to its own parameter group and steps it."""
        world = self._encoder_model_step(seq, std)  # 1. Eq. 7 (+ App. A.7's likelihood BC)
        real = self._real_latents(batch)  # target-encoder latents of real transitions
        reward = self._reward_classifier_step(batch, real)  # 2. Eq. 11 + Eq. 9 (+ pi_b)
        critic = self._critic_step(batch, real, reward.env_reward, std)  # 3. Eq. 10
        actor = self._actor_step(seq, real, world, std)  # 4. Eq. 8 (or TD3's actor)
        self.wm.update_targets(self.cfg.tau)  # 5. Polyak targets
        # The metric keys must be the same at every update (a CUDA graph, updater.py, and
        # the fused update freeze them): a new loss term adds its key in its step's
        # metrics unconditionally, with a zero tensor when its coefficient switches it off.
        return {**world.metrics, **reward.metrics, **critic.metrics, **actor.metrics}

    # ------------------------------------------------------- Algorithm 1's steps
    def _encoder_model_step(self, seq: SequenceBatch, std: float | torch.Tensor) -> WorldStep:
        """1. Encoder + model on the K-step bound over real sequences (Eq. 7), plus
        -log pi(a_data | z) along its latents when offline in the likelihood form."""
        cfg, wm = self.cfg, self.wm
        bound = model_bound_loss(
            wm,
            seq.obs,
            seq.action,
            std=std,
            stddev_clip=cfg.stddev_clip,
            kl_coef=cfg.kl_coef,
            include_value=cfg.value_in_encoder_loss,
            objective=EncoderObjective(cfg.encoder_objective),
            terminated=seq.terminated if self.termination else None,
        )
        world_loss = bound.loss
        bc_loss = bc_per_step = self._zero()
        if self.likelihood_bc:
            bc = likelihood_bc_loss(wm, bound.latents, seq.action, std)
            world_loss = world_loss + self.bc_weight * bc.loss
            bc_loss, bc_per_step = bc.loss, bc.per_step
        norm = self._apply("world", world_loss)
        metrics = {
            "loss/model_bound": bound.loss.detach(),
            "loss/behaviour_cloning": bc_loss.detach(),
            "model/kl": bound.kl,
            "model/reward": bound.reward,
            "model/value": bound.value,
            "model/behaviour_cloning": bc_per_step,
            "model/reconstruction": bound.reconstruction,
            "grad_norm/world": norm,
        }
        return WorldStep(latents=bound.latents, metrics=metrics)

    def _real_latents(self, batch: TransitionBatch) -> RealLatents:
        """Target-encoder Gaussians of the batch's states and next states, and the model's
        guess of z' from a sample of z (the classifier's fakes); no gradient."""
        wm = self.wm
        with torch.no_grad():
            z_mean, z_std = wm.encode_target(batch.obs)
            next_mean, next_std = wm.encode_target(batch.next_obs)
            z_model_next = rsample(*wm.next(rsample(z_mean, z_std), batch.action))
        return RealLatents(z_mean, z_std, next_mean, next_std, z_model_next)

    def _reward_classifier_step(self, batch: TransitionBatch, real: RealLatents) -> RewardStep:
        """2. Reward (Eq. 11) + classifier (Eq. 9), one parameter group; with the
        behaviour-kl term, pi_b's maximum likelihood on the same real transitions too. The
        reward is the env's, or App. A.8's shifted log of it when asked."""
        cfg, wm = self.cfg, self.wm
        env_reward = batch.reward
        if cfg.log_reward_shift > 0:
            env_reward = log_shift_reward(env_reward, cfg.log_reward_shift)
        z, z_next = rsample(real.z_mean, real.z_std), rsample(real.next_mean, real.next_std)
        reward_terms = reward_loss(wm, z, batch.action, env_reward)
        classifier = classifier_loss(wm, z, batch.action, z_next, real.z_model_next)
        loss = reward_terms.loss + classifier.loss
        behaviour_nll = self._zero()
        if self.behaviour_kl:
            behaviour = behaviour_policy_loss(wm, z, batch.action)
            loss = loss + behaviour.loss
            behaviour_nll = behaviour.nll
        ends_bce, ends_predicted = self._zero(), self._zero()
        if self.termination:
            ends = termination_loss(wm, z, batch.action, batch.terminated)
            loss = loss + ends.loss
            ends_bce, ends_predicted = ends.cross_entropy, ends.predicted
        norm = self._apply("reward", loss)
        metrics = {
            "loss/reward_classifier": loss.detach(),
            "reward/mse": reward_terms.mse,
            "classifier/ce": classifier.cross_entropy,
            "classifier/accuracy": classifier.accuracy,
            "behaviour/nll": behaviour_nll,
            "termination/cross_entropy": ends_bce,
            "termination/predicted": ends_predicted,
            "grad_norm/reward": norm,
        }
        return RewardStep(env_reward=env_reward, metrics=metrics)

    def _critic_step(
        self,
        batch: TransitionBatch,
        real: RealLatents,
        env_reward: torch.Tensor,
        std: float | torch.Tensor,
    ) -> Step:
        """3. The twin critic's TD loss on target-encoder samples (Eq. 10)."""
        cfg = self.cfg
        critic = critic_loss(
            self.wm,
            rsample(real.z_mean, real.z_std),
            batch.action,
            env_reward,
            rsample(real.next_mean, real.next_std),
            batch.terminated,
            std=std,
            stddev_clip=cfg.stddev_clip,
            gamma=cfg.gamma,
            entropy_bonus=cfg.entropy_bonus,
        )
        norm = self._apply("critic", critic.loss)
        metrics = {
            "loss/critic": critic.loss.detach(),
            "critic/q_mean": critic.q_mean,
            "critic/q_std": critic.q_std,
            "critic/target_mean": critic.target_mean,
            "grad_norm/critic": norm,
        }
        return Step(metrics=metrics)

    def _actor_step(
        self, seq: SequenceBatch, real: RealLatents, world: WorldStep, std: float | torch.Tensor
    ) -> Step:
        """4. The actor on K-step imagined rollouts from target-encoder samples (Eq. 8, the
        behaviour-kl term in its rewards when offline), or TD3's -Q (Fig. 5c); plus the
        likelihood BC term on the bound's latents (their values: step 1 used the graph)."""
        cfg, wm = self.cfg, self.wm
        behaviour_weight = self.bc_weight if self.behaviour_kl else 0.0
        start = rsample(real.z_mean, real.z_std)
        if ActorLoss(cfg.actor_loss) is ActorLoss.TD3:
            actor = actor_td3_loss(
                wm,
                start,
                std=std,
                stddev_clip=cfg.stddev_clip,
                behaviour_weight=behaviour_weight,
                q_alpha=cfg.td3_alpha,
            )
        else:
            actor = actor_svg_loss(
                wm,
                start,
                horizon=cfg.seq_len,
                std=std,
                stddev_clip=cfg.stddev_clip,
                gamma=cfg.gamma,
                lambda_=cfg.lambda_,
                classifier_coef=cfg.classifier_coef,
                entropy_bonus=cfg.entropy_bonus,
                action_penalty=cfg.action_penalty,
                behaviour_weight=behaviour_weight,
                behaviour_index=BcIndex(cfg.bc_index),
                termination=self.termination,
            )
        total = actor.loss
        if self.likelihood_bc:
            bc = likelihood_bc_loss(wm, world.latents.detach(), seq.action, std)
            total = total + self.bc_weight * bc.loss
        norm = self._apply("actor", total)
        metrics = {
            "loss/actor": actor.loss.detach(),
            "actor/imagined_reward": actor.imagined_reward,
            "actor/classifier_reward": actor.classifier_reward,
            "actor/value": actor.value,
            "actor/entropy": actor.entropy,
            "actor/behaviour_kl": actor.behaviour_kl,
            "actor/continuation": actor.continuation,
            "grad_norm/actor": norm,
        }
        return Step(metrics=metrics)

    def _zero(self) -> torch.Tensor:
        return torch.zeros(self.num_seeds, device=self.device)

    # ------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Networks, targets and optimisers."""
        return {
            "world_model": self.wm.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``'s output. The optimisers keep their own kernels (fused,
        foreach, capturable), so a checkpoint from another device resumes with this one's."""
        self.wm.load_state_dict(state["world_model"])
        for name, opt in self.optimizers.items():
            saved = state["optimizers"][name]
            kernels = {key: opt.param_groups[0][key] for key in adam_implementation(self.device)}
            groups = [{**group, **kernels} for group in saved["param_groups"]]
            opt.load_state_dict({**saved, "param_groups": groups})


# ------------------------------------------------------------- one seed's state
def seed_state(state: dict, index: int) -> dict:
    """Seed ``index``'s part of an S-seed ``AlmAgent.state_dict()``: a one-seed agent's
    state (every weight, buffer and Adam moment sliced to [index:index+1] along the leading
    seed dim; Adam's step counts, shared by all seeds, as they are)."""

    def part(value: torch.Tensor) -> torch.Tensor:
        return value[index : index + 1].clone() if value.dim() > 0 else value.clone()

    optimizers = {
        name: {
            "state": {k: {n: part(t) for n, t in v.items()} for k, v in opt["state"].items()},
            "param_groups": opt["param_groups"],
        }
        for name, opt in state["optimizers"].items()
    }
    return {
        "world_model": {key: part(value) for key, value in state["world_model"].items()},
        "optimizers": optimizers,
    }


def stack_seed_states(states: Sequence[dict]) -> dict:
    """The S-seed state of one-seed states (``seed_state``'s inverse): every tensor
    concatenated along the seed dim, in the order given."""
    first = states[0]

    def joined(values: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(values) if values[0].dim() > 0 else values[0].clone()

    optimizers = {}
    for name, opt in first["optimizers"].items():
        per_param = {
            key: {n: joined([s["optimizers"][name]["state"][key][n] for s in states]) for n in v}
            for key, v in opt["state"].items()
        }
        optimizers[name] = {"state": per_param, "param_groups": opt["param_groups"]}
    return {
        "world_model": {
            key: joined([s["world_model"][key] for s in states]) for key in first["world_model"]
        },
        "optimizers": optimizers,
    }
