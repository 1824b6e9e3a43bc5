"""Termination in the bound (issue 47 item 4, docs/termination.md): the pure pieces against
hand-computed values, the masked value term of the model bound, and the learned head in an
agent's update."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import seed_batches

from alm_offline.config import AgentConfig, ConfigError, load_config
from alm_offline.core.agent import AlmAgent
from alm_offline.core.losses import (
    lambda_returns,
    model_bound_loss,
    survival_weights,
    termination_loss,
)
from alm_offline.core.networks import WorldModel
from alm_offline.core.replay import ReplayBuffer


def test_lambda_returns_stop_at_a_predicted_end() -> None:
    rewards = torch.tensor([[1.0, 2.0]])  # (S=1, K=2)
    next_values = torch.tensor([[10.0, 20.0]])  # V_1, V_2
    continues = torch.tensor([[0.5, 1.0]])
    # R_1 = 2 + 0.9 * 1.0 * 20 = 20; R_0 = 1 + 0.9 * 0.5 * (0.5 * 10 + 0.5 * 20) = 7.75
    got = lambda_returns(rewards, next_values, 0.9, 0.5, continues)
    assert torch.allclose(got, torch.tensor([[7.75, 20.0]]))
    # without ends: R_0 = 1 + 0.9 * 15 = 14.5; c = 1 everywhere is the same
    assert torch.allclose(
        lambda_returns(rewards, next_values, 0.9, 0.5), torch.tensor([[14.5, 20.0]])
    )
    ones = lambda_returns(rewards, next_values, 0.9, 0.5, torch.ones(1, 2))
    assert torch.equal(ones, lambda_returns(rewards, next_values, 0.9, 0.5))
    # a certain end after step 0 leaves its reward alone
    ended = lambda_returns(rewards, next_values, 0.9, 0.5, torch.tensor([[0.0, 1.0]]))
    assert ended[0, 0].item() == 1.0


def test_survival_weights_by_hand() -> None:
    continues = torch.tensor([[[0.5], [0.8], [1.0]]])  # (S=1, K=3, B=1)
    got = survival_weights(continues, 0.9)
    assert torch.allclose(got.flatten(), torch.tensor([1.0, 0.9 * 0.5, 0.81 * 0.5 * 0.8]))
    zero = survival_weights(torch.tensor([[[0.0], [0.3], [0.3]]]), 0.9)  # no 0/0
    assert torch.equal(zero.flatten(), torch.tensor([1.0, 0.0, 0.0]))


def test_termination_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 1/2, 3/4
    stub = SimpleNamespace(termination_logit=lambda z, a: logits)
    terms = termination_loss(stub, None, None, torch.tensor([[1.0, 0.0]]))
    # -log(1/2) and -log(1/4): mean 1.5 log 2; the mean prediction (1/2 + 3/4) / 2
    assert terms.loss.item() == pytest.approx(1.5 * math.log(2.0))
    assert terms.predicted.item() == pytest.approx(0.625)


def test_the_model_bound_drops_q_after_a_real_terminal() -> None:
    torch.manual_seed(0)
    wm = WorldModel(4, 2, latent_dim=3, hidden_dim=8, model_hidden_dim=8)
    obs, action = torch.randn(1, 4, 5, 4), torch.rand(1, 3, 5, 2) * 2 - 1  # S=1, K=3, B=5

    def bound(terminated):
        torch.manual_seed(1)
        return model_bound_loss(wm, obs, action, std=0.1, stddev_clip=0.3, terminated=terminated)

    free, none_ended = bound(None), bound(torch.zeros(1, 3, 5))
    assert torch.equal(free.loss, none_ended.loss) and torch.equal(free.value, none_ended.value)
    ended = torch.zeros(1, 3, 5)
    ended[:, -1] = 1.0  # every sequence ends in a fall at its last step
    all_ended = bound(ended)
    assert all_ended.value.abs().item() == 0.0
    assert torch.allclose(all_ended.loss, free.loss + free.value)  # the loss had -Q(z_K)


def terminal_replay(obs_dim: int = 4, action_dim: int = 2) -> ReplayBuffer:
    """Episodes that a step with action[0] > 0.5 ends (a fall the head can tell exactly)."""
    rng = np.random.default_rng(3)
    replay = ReplayBuffer(2000, obs_dim, action_dim, 3)
    while replay.size < 1800:
        replay.start_episode(rng.normal(size=obs_dim))
        for _ in range(30):
            action = rng.uniform(-1, 1, action_dim)
            replay.add(action, 1.0, bool(action[0] > 0.5), rng.normal(size=obs_dim))
            if action[0] > 0.5:
                break
    return replay


def test_a_learned_termination_head_learns_the_ends() -> None:
    cfg = AgentConfig(
        batch_size=64, hidden_dim=32, model_hidden_dim=32, latent_dim=8, termination="learned",
        lr=1e-3, compile="off",
    )  # fmt: skip
    agent = AlmAgent(4, 2, cfg, seeds=(1, 2))
    replay = terminal_replay()
    torch.manual_seed(0)
    first = None
    for _ in range(200):
        seq, batch = seed_batches(replay, 64, seeds=2)
        metrics = agent.update(seq, batch, 0.3)
        first = metrics["termination/cross_entropy"] if first is None else first
    last = metrics["termination/cross_entropy"]
    base = replay.terminated[: replay.size].mean().item()  # the share of ends, about 0.25
    entropy = -(base * math.log(base) + (1 - base) * math.log(1 - base))
    assert torch.all(last < 0.5 * entropy), (first, last, entropy)  # beats the base rate
    assert torch.all((metrics["actor/continuation"] > 0) & (metrics["actor/continuation"] < 1))
    assert any(key.startswith("termination.") for key in agent.wm.state_dict())  # saved


def test_termination_choices_are_checked() -> None:
    assert load_config("quick", ["agent.termination=learned"]).agent.termination == "learned"
    with pytest.raises(ConfigError, match="termination"):
        load_config("quick", ["agent.termination=maybe"])
