"""agent.obs_norm: encoders see observations standardised with the data's statistics."""

from __future__ import annotations

import numpy as np
import torch
from conftest import train_tiny_run

from alm_offline.config import AgentConfig
from alm_offline.core.agent import AlmAgent
from alm_offline.training.checkpoint import load_agent, read_checkpoint


def small(**changes) -> AgentConfig:
    return AgentConfig(batch_size=8, hidden_dim=16, model_hidden_dim=16, latent_dim=4, **changes)


def test_standardised_inputs_reach_both_encoders():
    agent = AlmAgent(3, 1, small(obs_norm=True), torch.device("cpu"))
    data = torch.tensor([[0.0, 10.0, -5.0], [2.0, 30.0, -5.0], [4.0, 50.0, -5.0]])
    agent.set_observation_stats(data)
    wm = agent.wm
    assert wm.obs_mean.shape == wm.obs_std.shape == (1, 3)  # (S, D)
    assert torch.allclose(wm.obs_mean, torch.tensor([[2.0, 30.0, -5.0]]))
    assert torch.allclose(wm.obs_std, torch.tensor([[2.0, 20.0, 1e-3]]))  # a constant dim: floor
    obs = torch.tensor([[[4.0, 10.0, -5.0]]])  # (S=1, B=1, D)
    standardised = torch.tensor([[[1.0, -1.0, 0.0]]])
    assert torch.equal(wm.encode(obs)[0], wm.encoder(standardised)[0])
    assert torch.equal(wm.encode_target(obs)[0], wm.encoder_target(standardised)[0])


def test_without_obs_norm_the_stats_change_nothing():
    agent = AlmAgent(3, 1, small(), torch.device("cpu"))
    agent.set_observation_stats(np.ones((5, 3), dtype=np.float32))
    assert "obs_mean" not in agent.wm.state_dict()
    obs = torch.randn(1, 2, 3)  # (S=1, B, D)
    assert torch.equal(agent.wm.encode(obs)[0], agent.wm.encoder(obs)[0])


def test_an_online_run_standardises_by_its_warm_up_data_and_saves_it(tmp_path):
    run_dir = train_tiny_run(tmp_path / "run", "agent.obs_norm=true")
    state = read_checkpoint(run_dir / "checkpoints" / "latest.pt")
    mean = state["agent"]["world_model"]["obs_mean"]
    std = state["agent"]["world_model"]["obs_std"]
    # the first update follows the 101st transition: every observation written until then
    has_next = state["replay"]["has_next"].numpy()
    last = int(np.flatnonzero(np.cumsum(has_next) == 101)[0]) + 1  # its next observation
    replay_obs = state["replay"]["obs"][: last + 1]
    assert mean.shape == std.shape == (1, replay_obs.shape[1])  # one seed's (S=1, D)
    assert torch.allclose(mean[0], replay_obs.mean(0), atol=1e-6)
    assert torch.allclose(std[0], replay_obs.std(0), atol=1e-6)
    agent, _, _ = load_agent(run_dir)
    assert torch.equal(agent.wm.obs_mean, mean) and torch.equal(agent.wm.obs_std, std)
