"""A frozen copy of ``AlmAgent._update`` as it was before issue 42 split it into Algorithm 1's
named steps: ``tests/test_agent_steps.py`` runs it beside today's and requires bit-identical
weights, Adam moments and metrics. Never edit it to follow the agent."""

from __future__ import annotations

import torch

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
)
from alm_offline.core.metrics import Metrics
from alm_offline.core.networks import rsample
from alm_offline.core.replay import SequenceBatch, TransitionBatch


def frozen_update(
    self, seq: SequenceBatch, batch: TransitionBatch, std: float | torch.Tensor
) -> Metrics:
    cfg, wm = self.cfg, self.wm

    # 1. encoder + model on the bound (Eq. 7), plus -log pi(a_data | z) along its latents
    # when offline in the likelihood form
    bound = model_bound_loss(
        wm,
        seq.obs,
        seq.action,
        std=std,
        stddev_clip=cfg.stddev_clip,
        kl_coef=cfg.kl_coef,
        include_value=cfg.value_in_encoder_loss,
        objective=cfg.encoder_objective,
    )
    world_loss = bound.loss
    zero = torch.zeros(self.num_seeds, device=self.device)
    bc_loss = bc_per_step = behaviour_nll = zero
    likelihood = cfg.bc_weight > 0 and cfg.bc_term == "likelihood"
    if likelihood:
        bc = likelihood_bc_loss(wm, bound.latents, seq.action, std)
        world_loss = world_loss + self.bc_weight * bc.loss
        bc_loss, bc_per_step = bc.loss, bc.per_step
    world_norm = self._apply("world", world_loss)

    # target-encoder latents of real transitions, and the model's guess of z'
    with torch.no_grad():
        z_mean, z_std = wm.encode_target(batch.obs)
        next_mean, next_std = wm.encode_target(batch.next_obs)
        z_model_next = rsample(*wm.next(rsample(z_mean, z_std), batch.action))

    # the shifted-log MDP of App. A.8 when asked; the env's reward otherwise
    reward = batch.reward
    if cfg.log_reward_shift > 0:
        reward = log_shift_reward(reward, cfg.log_reward_shift)

    # 2. reward (Eq. 11) + classifier (Eq. 9), one parameter group; with behaviour-kl,
    # pi_b's maximum likelihood on the same real transitions too
    z, z_next = rsample(z_mean, z_std), rsample(next_mean, next_std)
    reward_terms = reward_loss(wm, z, batch.action, reward)
    classifier = classifier_loss(wm, z, batch.action, z_next, z_model_next)
    reward_classifier = reward_terms.loss + classifier.loss
    if self.behaviour_kl:
        behaviour = behaviour_policy_loss(wm, z, batch.action)
        reward_classifier = reward_classifier + behaviour.loss
        behaviour_nll = behaviour.nll
    reward_norm = self._apply("reward", reward_classifier)

    # 3. critic (Eq. 10)
    critic = critic_loss(
        wm,
        rsample(z_mean, z_std),
        batch.action,
        reward,
        rsample(next_mean, next_std),
        batch.terminated,
        std=std,
        stddev_clip=cfg.stddev_clip,
        gamma=cfg.gamma,
        entropy_bonus=cfg.entropy_bonus,
    )
    critic_norm = self._apply("critic", critic.loss)

    # 4. actor on imagined rollouts from target-encoder latents (Eq. 8, or TD3's -Q1),
    # with the behaviour-kl term in its rewards, or plus the likelihood term on the
    # bound's latents (their values; the world step above used the graph)
    if cfg.actor_loss == "td3":
        actor = actor_td3_loss(
            wm,
            rsample(z_mean, z_std),
            std=std,
            stddev_clip=cfg.stddev_clip,
            behaviour_weight=self.bc_weight if self.behaviour_kl else 0.0,
            q_alpha=cfg.td3_alpha,
        )
    else:
        actor = actor_svg_loss(
            wm,
            rsample(z_mean, z_std),
            horizon=cfg.seq_len,
            std=std,
            stddev_clip=cfg.stddev_clip,
            gamma=cfg.gamma,
            lambda_=cfg.lambda_,
            classifier_coef=cfg.classifier_coef,
            entropy_bonus=cfg.entropy_bonus,
            action_penalty=cfg.action_penalty,
            behaviour_weight=self.bc_weight if self.behaviour_kl else 0.0,
            behaviour_index=cfg.bc_index,
        )
    actor_total = actor.loss
    if likelihood:
        actor_bc = likelihood_bc_loss(wm, bound.latents.detach(), seq.action, std)
        actor_total = actor_total + self.bc_weight * actor_bc.loss
    actor_norm = self._apply("actor", actor_total)

    # 5. targets
    wm.update_targets(cfg.tau)

    # The metric keys must be the same at every update (a CUDA graph, updater.py, and
    # the fused update freeze them): a new loss term adds its key here unconditionally,
    # with a zero tensor when its coefficient switches it off.
    return {
        "loss/model_bound": bound.loss.detach(),
        "loss/behaviour_cloning": bc_loss.detach(),
        "loss/reward_classifier": reward_classifier.detach(),
        "loss/critic": critic.loss.detach(),
        "loss/actor": actor.loss.detach(),
        "model/kl": bound.kl,
        "model/reward": bound.reward,
        "model/value": bound.value,
        "model/behaviour_cloning": bc_per_step,
        "model/reconstruction": bound.reconstruction,
        "reward/mse": reward_terms.mse,
        "classifier/ce": classifier.cross_entropy,
        "classifier/accuracy": classifier.accuracy,
        "critic/q_mean": critic.q_mean,
        "critic/q_std": critic.q_std,
        "critic/target_mean": critic.target_mean,
        "actor/imagined_reward": actor.imagined_reward,
        "actor/classifier_reward": actor.classifier_reward,
        "actor/value": actor.value,
        "actor/entropy": actor.entropy,
        "actor/behaviour_kl": actor.behaviour_kl,
        "behaviour/nll": behaviour_nll,
        "grad_norm/world": world_norm,
        "grad_norm/reward": reward_norm,
        "grad_norm/critic": critic_norm,
        "grad_norm/actor": actor_norm,
    }
