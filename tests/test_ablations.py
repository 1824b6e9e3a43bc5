"""The paper's ablation switches: each changes which terms appear in which loss, as described
in Sec. 5.3 and Appendix E, and a short run of each on the quick config completes."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import filled_replay, seed_batches

from alm_offline.config import AgentConfig
from alm_offline.core.agent import AlmAgent
from alm_offline.core.losses import (
    actor_svg_loss,
    actor_td3_loss,
    critic_loss,
    log_shift_reward,
    model_bound_loss,
    policy_entropy,
)
from alm_offline.core.networks import IDENTITY_STD, SeedLinear
from cli import alm

OBS, ACT, K = 5, 2, 3


def small_agent(seed: int = 0, **overrides) -> AlmAgent:
    torch.manual_seed(seed)
    cfg = AgentConfig(hidden_dim=16, model_hidden_dim=16, latent_dim=4, batch_size=8, **overrides)
    return AlmAgent(OBS, ACT, cfg)


@pytest.fixture(scope="module")
def batches():
    torch.manual_seed(1)
    replay = filled_replay(OBS, ACT)
    return seed_batches(replay, 8)  # one seed: (1, K+1, B, D) sequences, (1, B, ...) transitions


def seeded(fn, seed: int = 7):
    """Run ``fn`` after seeding torch, so two calls draw the same noise."""
    torch.manual_seed(seed)
    return fn()


def perturb(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))


def bound(agent: AlmAgent, seq, **kwargs):
    return seeded(
        lambda: model_bound_loss(agent.wm, seq.obs, seq.action, std=0.3, stddev_clip=0.3, **kwargs)
    )


def svg(agent: AlmAgent, z: torch.Tensor, **kwargs):
    args = dict(horizon=K, std=0.3, stddev_clip=0.3, gamma=0.99, lambda_=0.95)
    args["classifier_coef"] = kwargs.pop("classifier_coef", 0.1)
    return seeded(lambda: actor_svg_loss(agent.wm, z, **args, **kwargs))


def test_defaults_are_the_papers_main_method() -> None:
    cfg = AgentConfig()
    assert (cfg.kl_coef, cfg.value_in_encoder_loss, cfg.classifier_coef) == (1.0, True, 0.1)
    assert (cfg.actor_loss, cfg.entropy_bonus, cfg.log_reward_shift) == ("svg", 0.0, 0.0)
    assert (cfg.classifier, cfg.encoder, cfg.encoder_objective) == ("mlp", "mlp", "alm")


def test_kl_coef_scales_exactly_the_kl_term(batches) -> None:
    seq, _ = batches
    agent = small_agent()
    full, no_kl, half = (bound(agent, seq, kl_coef=c) for c in (1.0, 0.0, 0.5))
    assert full.loss.shape == full.kl.shape == (1,)  # per seed
    # loss = mean_b sum_t (kl_coef KL_t - r_t) - Q: the difference is the summed KL
    assert (full.loss - no_kl.loss)[0].item() == pytest.approx(K * full.kl[0].item(), rel=1e-5)
    assert (half.loss - no_kl.loss)[0].item() == pytest.approx(
        0.5 * K * full.kl[0].item(), rel=1e-5
    )
    assert full.kl[0].item() > 0


def test_no_value_term_drops_q_from_the_encoder_loss(batches) -> None:
    seq, _ = batches
    agent = small_agent()
    with_value = bound(agent, seq)
    without = bound(agent, seq, include_value=False)
    assert (without.loss - with_value.loss)[0].item() == pytest.approx(
        with_value.value[0].item(), 1e-5
    )
    perturb(agent.wm.critic)  # the critic no longer reaches the encoder's loss
    assert bound(agent, seq, include_value=False).loss[0].item() == pytest.approx(
        without.loss[0].item()
    )
    assert bound(agent, seq).loss[0].item() != pytest.approx(with_value.loss[0].item())


def test_no_classifier_reward_removes_the_classifier_from_the_policy_loss(batches) -> None:
    _, batch = batches
    agent = small_agent()
    z = agent.wm.encode_target(batch.obs)[0]
    with_c, without_c = svg(agent, z), svg(agent, z, classifier_coef=0.0)
    perturb(agent.wm.classifier)
    assert svg(agent, z, classifier_coef=0.0).loss[0].item() == pytest.approx(
        without_c.loss[0].item()
    )
    assert svg(agent, z).loss[0].item() != pytest.approx(with_c.loss[0].item())
    assert without_c.classifier_reward.shape == (1,)
    assert without_c.classifier_reward[0].item() == 0.0


def test_td3_actor_loss_is_minus_q1_and_ignores_the_model(batches) -> None:
    seq, batch = batches
    agent = small_agent(actor_loss="td3")
    metrics = seeded(lambda: agent.update(seq, batch, 0.3))
    assert metrics["actor/imagined_reward"].shape == (1,)
    assert metrics["actor/imagined_reward"][0].item() == 0.0  # no imagined rollout
    wm = agent.wm
    z = wm.encode_target(batch.obs)[0]  # (1, B, Z)
    loss = actor_td3_loss(wm, z).loss
    assert loss.shape == (1,)
    q = wm.q(z, wm.pi(z)).squeeze(-1)[:, 0]  # (2, B): seed 0's twins
    assert loss[0].item() == pytest.approx(-q[0].mean().item(), rel=1e-6)  # TD3: Q1 only
    assert loss[0].item() != pytest.approx(-q.min(0).values.mean().item(), rel=1e-6)
    svg_before = svg(agent, z).loss[0].item()
    for name in ("model", "reward_head", "classifier"):  # no model, reward or classifier
        perturb(getattr(wm, name))
    assert actor_td3_loss(wm, z).loss[0].item() == pytest.approx(loss[0].item())
    assert svg(agent, z).loss[0].item() != pytest.approx(svg_before)  # SVG's does depend on them
    grads = torch.autograd.grad(loss.sum(), list(wm.model.parameters()), allow_unused=True)
    assert all(g is None for g in grads)


def test_entropy_bonus_learns_the_policy_std_and_rewards_entropy(batches) -> None:
    _, batch = batches
    agent = small_agent(entropy_bonus=0.2)
    wm = agent.wm
    assert wm.actor.net[-1].out_features == 2 * ACT  # mean and log-std heads
    z = wm.encode_target(batch.obs)[0]
    z_next = wm.encode_target(batch.next_obs)[0]

    def critic(alpha: float):
        return seeded(
            lambda: critic_loss(
                wm,
                z,
                batch.action,
                batch.reward,
                z_next,
                batch.terminated,
                std=0.3,
                stddev_clip=0.3,
                gamma=0.99,
                entropy_bonus=alpha,
            )
        )

    entropy = policy_entropy(wm.policy(z_next, 0.3)[1])  # (1, B)
    bonus = (0.99 * (1 - batch.terminated[0]) * 0.2 * entropy[0]).mean()  # seed 0's
    diff = critic(0.2).target_mean - critic(0.0).target_mean
    assert diff.shape == (1,)
    assert diff[0].item() == pytest.approx(bonus.item(), rel=1e-5)

    # the policy loss gains -alpha * sum_t g^t R^lambda(H_t): pushes the std up
    raw_std_bias = wm.actor.net[-1].bias  # (S=1, 1, 2A)
    with_bonus, without = svg(agent, z, entropy_bonus=1.0), svg(agent, z)
    assert with_bonus.entropy[0].item() != 0.0 and without.entropy[0].item() == 0.0
    # S = 1: the sum is seed 0's loss
    (grad,) = torch.autograd.grad((with_bonus.loss - without.loss).sum(), [raw_std_bias])
    assert grad.shape == (1, 1, 2 * ACT)
    grad = grad[0, 0]
    assert torch.all(grad[ACT:] < 0)  # more entropy, lower loss
    assert torch.allclose(grad[:ACT], torch.zeros(ACT), atol=1e-6)  # the mean is untouched


def test_log_reward_shift_is_app_a8_and_only_transforms_rewards(batches) -> None:
    r = torch.tensor([-5.0, 0.0, 3.0, 100.0])
    a = 10_000.0
    expected = a * (torch.log(r.double() + a) - math.log(a))
    assert torch.allclose(log_shift_reward(r, a).double(), expected, rtol=1e-5)
    assert torch.allclose(log_shift_reward(r, a), r, rtol=6e-3, atol=1e-6)  # ~ r when |r| << a
    # an agent with shift a on rewards r == an agent without it on rewards a log(1 + r / a)
    seq, batch = batches
    shifted, plain = small_agent(log_reward_shift=2.0), small_agent()
    m_shifted = seeded(lambda: shifted.update(seq, batch, 0.3))
    transformed = replace(batch, reward=log_shift_reward(batch.reward, 2.0))
    m_plain = seeded(lambda: plain.update(seq, transformed, 0.3))
    for key in m_plain:
        assert m_shifted[key].shape == m_plain[key].shape == (1,), key
        assert m_shifted[key][0].item() == pytest.approx(m_plain[key][0].item(), rel=1e-5), key
    m_raw = seeded(lambda: small_agent().update(seq, batch, 0.3))
    assert m_raw["reward/mse"][0].item() != pytest.approx(m_shifted["reward/mse"][0].item())


def test_linear_classifier_is_one_affine_map(batches) -> None:
    seq, batch = batches
    agent = small_agent(classifier="linear")
    layers = list(agent.wm.classifier.net)  # a SeedMLP of one layer
    assert len(layers) == 1 and isinstance(layers[0], SeedLinear)
    assert (layers[0].in_features, layers[0].out_features) == (10, 2)
    x, y = torch.randn(1, 3, 4), torch.randn(1, 3, 4)  # (S=1, B, Z)
    a, z2 = torch.randn(1, 3, ACT), torch.randn(1, 3, 4)
    logits = agent.wm.logits
    affine_gap = logits(x + y, a, z2) - logits(x, a, z2) - logits(y, a, z2) + logits(0 * x, a, z2)
    assert torch.allclose(affine_gap, torch.zeros_like(affine_gap), atol=1e-5)
    metrics = agent.update(seq, batch, 0.3)
    assert metrics["classifier/ce"].shape == (1,)
    assert torch.isfinite(metrics["classifier/ce"]).all()


def test_identity_encoder_makes_the_state_the_latent(batches) -> None:
    seq, batch = batches
    agent = small_agent(encoder="identity")
    wm = agent.wm
    mean, std = wm.encode(batch.obs)
    assert torch.equal(mean, batch.obs) and torch.all(std == IDENTITY_STD)
    assert wm.latent_dim == OBS and wm.model.gaussian.net[-1].out_features == 2 * OBS
    assert agent.groups["world"] == list(wm.model.parameters())  # only the model learns
    metrics = agent.update(seq, batch, 0.3)
    assert all(v.shape == (1,) and torch.isfinite(v).all() for v in metrics.values())


def test_reconstruction_objective_is_likelihood_without_reward_or_value(batches) -> None:
    seq, batch = batches
    agent = small_agent(encoder_objective="reconstruction")
    wm = agent.wm
    decoder_params = list(wm.decoder.parameters())
    assert all(any(p is q for q in agent.groups["world"]) for p in decoder_params)
    terms = bound(agent, seq, objective="reconstruction")
    # loss = mean_b [sum_{t<=K} ||d(z_t) - s_t||^2 + sum_{t<K} KL_t]
    expected = (K + 1) * terms.reconstruction + K * terms.kl
    assert terms.loss.shape == expected.shape == (1,)
    assert terms.loss[0].item() == pytest.approx(expected[0].item(), rel=1e-5)
    assert terms.reward[0].item() == 0.0 and terms.value[0].item() == 0.0
    for name in ("reward_head", "critic", "actor"):  # nothing of the return reaches it
        perturb(getattr(wm, name))
    assert bound(agent, seq, objective="reconstruction").loss[0].item() == pytest.approx(
        terms.loss[0].item()
    )
    metrics = agent.update(seq, batch, 0.3)
    assert metrics["model/reconstruction"][0].item() > 0


ABLATIONS = {
    "no_kl": ["agent.kl_coef=0"],
    "no_value": ["agent.value_in_encoder_loss=false"],
    "no_classifier": ["agent.classifier_coef=0"],
    "td3_actor": ["agent.actor_loss=td3"],
    "entropy_bonus": ["agent.entropy_bonus=0.1"],
    "log_reward": ["agent.log_reward_shift=10000"],
    "linear_classifier": ["agent.classifier=linear"],
    "identity_encoder": ["agent.encoder=identity"],
    "reconstruction": ["agent.encoder_objective=reconstruction"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_each_ablation_runs_on_the_quick_config(name: str, tmp_path: Path) -> None:
    run_dir = tmp_path / name
    short = [
        "steps=1100",
        "agent.warmup_steps=1000",
        "eval.every=1100",
        "eval.episodes=1",
        "checkpoint_every=1100",
        "log_every=50",
        f"run_dir={run_dir}",
    ]
    args = ["train-online", "--config", "quick", "--quiet", *short, *ABLATIONS[name]]
    result = CliRunner().invoke(alm, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["updates"] == 100 and math.isfinite(summary["eval_return_mean"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert all(math.isfinite(v) for v in last.values() if isinstance(v, float))
    if name == "reconstruction":
        assert last["model/reconstruction"] > 0 and last["model/reward"] == 0
    if name == "entropy_bonus":
        assert last["actor/entropy"] != 0
    if name == "td3_actor":
        assert last["actor/imagined_reward"] == 0
