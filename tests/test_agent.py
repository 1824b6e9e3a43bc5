"""Gradient routing: each loss changes only the parameters its group owns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import filled_replay, seed_batches

from alm_offline.config import AgentConfig
from alm_offline.core.agent import AlmAgent, exploration_std
from alm_offline.core.losses import (
    actor_svg_loss,
    classifier_loss,
    critic_loss,
    likelihood_bc_loss,
    model_bound_loss,
    reward_loss,
)

OBS, ACT = 5, 2


def small_agent(**overrides) -> AlmAgent:
    cfg = AgentConfig(hidden_dim=16, model_hidden_dim=16, latent_dim=4, batch_size=8, **overrides)
    return AlmAgent(OBS, ACT, cfg)


def snapshot(agent: AlmAgent) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in agent.wm.state_dict().items()}


def changed_modules(before: dict, agent: AlmAgent) -> set[str]:
    after = agent.wm.state_dict()
    return {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}


def test_each_loss_moves_only_its_own_group():
    torch.manual_seed(0)
    agent, replay = small_agent(), filled_replay(OBS, ACT)
    seq, batch = seed_batches(replay, 8)  # one seed: (1, K+1, 8, D) and (1, 8, ...)
    wm = agent.wm

    before = snapshot(agent)
    bound = model_bound_loss(wm, seq.obs, seq.action, std=0.5, stddev_clip=0.3)
    agent._apply("world", bound.loss)
    assert changed_modules(before, agent) == {"encoder", "model"}

    z = wm.encode_target(batch.obs)[0]
    z_next = wm.encode_target(batch.next_obs)[0]
    before = snapshot(agent)
    reward = reward_loss(wm, z, batch.action, batch.reward)
    classifier = classifier_loss(wm, z, batch.action, z_next, z_next + 1)
    agent._apply("reward", reward.loss + classifier.loss)
    assert changed_modules(before, agent) == {"reward_head", "classifier"}

    before = snapshot(agent)
    td = critic_loss(
        wm,
        z,
        batch.action,
        batch.reward,
        z_next,
        batch.terminated,
        std=0.5,
        stddev_clip=0.3,
        gamma=0.99,
    )
    agent._apply("critic", td.loss)
    assert changed_modules(before, agent) == {"critic"}

    before = snapshot(agent)
    actor = actor_svg_loss(
        wm, z, horizon=3, std=0.5, stddev_clip=0.3, gamma=0.99, lambda_=0.95, classifier_coef=0.1
    )
    agent._apply("actor", actor.loss)
    assert changed_modules(before, agent) == {"actor"}


def test_losses_depend_on_the_modules_the_paper_says():
    """Which parameters each loss has a gradient path to (before the agent routes it)."""
    torch.manual_seed(0)
    agent, replay = small_agent(), filled_replay(OBS, ACT)
    wm = agent.wm
    seq, batch = seed_batches(replay, 8)

    def reached(loss: torch.Tensor) -> set[str]:
        assert loss.shape == (1,)  # one per seed
        names = [n for n, p in wm.named_parameters() if p.requires_grad]
        params = [p for p in wm.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss.sum(), params, allow_unused=True, retain_graph=True)
        return {
            n.split(".")[0]
            for n, g in zip(names, grads, strict=True)
            if g is not None and g.abs().sum() > 0
        }

    bound = model_bound_loss(wm, seq.obs, seq.action, std=0.5, stddev_clip=0.3)
    # encoder+model through z; reward and critic only as functions of z (their weights are
    # not the agent's to update here); the actor acts without gradient; no classifier
    assert reached(bound.loss) == {"encoder", "model", "reward_head", "critic"}
    # App. A.7's BC term along the bound's latents: the actor through pi, encoder + model
    # through z_t; on the detached latents only the actor
    assert reached(likelihood_bc_loss(wm, bound.latents, seq.action, 0.5).loss) == {
        "actor",
        "encoder",
        "model",
    }
    detached = likelihood_bc_loss(wm, bound.latents.detach(), seq.action, 0.5)
    assert reached(detached.loss) == {"actor"}

    z = wm.encode_target(batch.obs)[0]
    actor = actor_svg_loss(
        wm, z, horizon=3, std=0.5, stddev_clip=0.3, gamma=0.99, lambda_=0.95, classifier_coef=0.1
    )
    # not the encoder: the policy trains on target-encoder latents
    assert reached(actor.loss) == {"actor", "model", "reward_head", "classifier", "critic"}

    td = critic_loss(
        wm, z, batch.action, batch.reward, z, batch.terminated, std=0.5, stddev_clip=0.3, gamma=0.99
    )
    assert reached(td.loss) == {"critic"}  # the target side is computed without gradient


def test_update_returns_finite_detached_metrics_and_moves_targets_by_tau():
    torch.manual_seed(0)
    agent, replay = small_agent(), filled_replay(OBS, ACT)
    target_before = agent.wm.encoder_target.net[0].weight.clone()
    online_before = agent.wm.encoder.net[0].weight.clone()
    metrics = agent.update(*seed_batches(replay, 8), std=0.5)
    assert all(v.shape == (1,) for v in metrics.values())  # one value per seed
    assert all(not v.requires_grad and torch.isfinite(v).all() for v in metrics.values())
    assert metrics["classifier/accuracy"].item() * 8 in range(9)  # a fraction of the 8 rows
    # encoder target <- lerp(target, updated encoder, tau); target started equal to encoder
    online_after = agent.wm.encoder.net[0].weight
    expected = target_before + agent.cfg.tau * (online_after - target_before)
    torch.testing.assert_close(agent.wm.encoder_target.net[0].weight, expected)
    assert not torch.equal(online_after, online_before)


def test_act_shapes_bounds_and_determinism():
    torch.manual_seed(0)
    agent = small_agent()
    obs = np.random.default_rng(0).normal(size=OBS).astype(np.float32)
    a1, a2 = agent.act(obs, 0.0, deterministic=True), agent.act(obs, 0.0, deterministic=True)
    assert a1.shape == (ACT,) and np.array_equal(a1, a2)
    batched = agent.act(obs[None], 0.0, deterministic=True)  # obs (S, D) -> (S, A)
    assert batched.shape == (1, ACT) and np.array_equal(batched[0], a1)
    noisy = np.stack([agent.act(obs, 5.0) for _ in range(50)])
    assert noisy.min() >= -1.0 and noisy.max() <= 1.0 and noisy.std() > 0.1


def test_exploration_schedule_is_linear_in_updates():
    cfg = AgentConfig()
    assert exploration_std(cfg, 0) == pytest.approx(1.0)
    assert exploration_std(cfg, 50_000) == pytest.approx(0.55)
    assert exploration_std(cfg, 10**7) == pytest.approx(0.1)


def test_update_refuses_sequences_of_another_length():
    torch.manual_seed(0)
    agent = small_agent(seq_len=3)
    other = filled_replay(OBS, ACT, seq_len=2)  # sequences of 2 steps
    with pytest.raises(ValueError, match="sequences of 2 steps, the agent's seq_len is 3"):
        agent.update(*seed_batches(other, 8), std=0.5)
