"""The fast paths compute what the plain ones do: same batch in, same losses and weights out."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from click.testing import CliRunner
from conftest import filled_replay, load_benchmark
from torch import nn

from alm_offline.config import AgentConfig, ConfigError, load_config
from alm_offline.core.agent import AlmAgent
from alm_offline.core.networks import TwinCritic, mlp, seed_generators
from alm_offline.core.replay import ReplayBuffer
from alm_offline.core.updater import CudaGraphUpdater, EagerUpdater, make_updater
from alm_offline.errors import AlmWarning
from cli import alm

OBS, ACT = 5, 2


def agent_pair(**overrides) -> tuple[AlmAgent, AlmAgent]:
    """Two agents with identical weights and optimiser settings."""
    cfg = AgentConfig(hidden_dim=32, model_hidden_dim=48, latent_dim=6, batch_size=16, **overrides)
    torch.manual_seed(0)
    first, second = AlmAgent(OBS, ACT, cfg), AlmAgent(OBS, ACT, cfg)
    second.load_state_dict(first.state_dict())
    return first, second


class PlainAgent(AlmAgent):
    """Reference mechanics: zero every grad, ``backward`` through the whole graph, then a
    per-tensor clip and a per-tensor (non-foreach) Adam step of one group. One seed: the
    summed loss is that seed's, and its per-seed norm is the total norm."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.optimizers = {
            name: torch.optim.Adam(params, lr=self.cfg.lr, foreach=False)
            for name, params in self.groups.items()
        }

    def _apply(self, name, loss):
        assert self.num_seeds == 1 and loss.shape == (1,)
        self.wm.zero_grad(set_to_none=True)
        loss.sum().backward(retain_graph=True)
        params = self.groups[name]
        norm = nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm, foreach=False)
        self.optimizers[name].step()
        return norm.reshape(1)  # (S,)


def updated_weights(agent: AlmAgent, replay: ReplayBuffer, std, seed: int = 3):
    torch.manual_seed(seed)
    metrics = EagerUpdater(agent, replay).step(std)
    weights = {k: v.detach().clone() for k, v in agent.wm.state_dict().items()}
    return metrics, weights


@pytest.mark.parametrize(
    "bc",
    [
        {},
        {"bc_weight": 0.04, "bc_term": "likelihood"},
        {"bc_weight": 0.5, "bc_term": "behaviour-kl"},
    ],
)
def test_fast_update_matches_plain_backward_reference(bc):
    fast, _ = agent_pair(**bc)
    plain = PlainAgent(OBS, ACT, fast.cfg)
    plain.load_state_dict(fast.state_dict())
    replay = filled_replay(OBS, ACT)
    before = {k: v.clone() for k, v in fast.wm.state_dict().items()}

    fast_metrics, fast_weights = updated_weights(fast, replay, 0.4)
    plain_metrics, plain_weights = updated_weights(plain, replay, 0.4)

    assert set(fast_metrics) == set(plain_metrics)
    for key in fast_metrics:
        assert fast_metrics[key].shape == (1,), key
        torch.testing.assert_close(fast_metrics[key], plain_metrics[key], rtol=1e-5, atol=1e-6)
    moved = 0
    for key, value in fast_weights.items():
        torch.testing.assert_close(value, plain_weights[key], rtol=1e-5, atol=1e-6)
        moved += not torch.equal(value, before[key])
    assert moved > 20  # the update really changed the networks
    assert fast.optimizers["world"].param_groups[0]["fused"] is True  # CPU: fused Adam
    assert not plain.optimizers["world"].param_groups[0]["fused"]  # kept through the load


def test_a_checkpoint_from_other_adam_kernels_resumes_with_this_agents():
    """A state saved by foreach Adam (this project's CPU kernels before fused Adam) loads into
    a CPU agent as fused Adam with float32 step counts, then updates as the saving agent."""
    saver, loader = agent_pair()
    replay = filled_replay(OBS, ACT)
    for opt in saver.optimizers.values():
        opt.param_groups[0].update(foreach=True, fused=False)
    updated_weights(saver, replay, 0.4)
    file = io.BytesIO()  # a checkpoint's round trip (in memory, load would share tensors)
    torch.save(saver.state_dict(), file)
    file.seek(0)
    state = torch.load(file)
    assert state["optimizers"]["critic"]["param_groups"][0]["foreach"] is True
    loader.load_state_dict(state)
    for opt in loader.optimizers.values():
        group = opt.param_groups[0]
        assert (group["fused"], group["foreach"], group["capturable"]) == (True, False, False)
        steps = [opt.state[p]["step"] for p in group["params"]]
        assert all(s.dtype == torch.float32 and float(s) == 1.0 for s in steps)
    _, saver_weights = updated_weights(saver, replay, 0.4, seed=5)
    _, loader_weights = updated_weights(loader, replay, 0.4, seed=5)
    for key, value in saver_weights.items():
        torch.testing.assert_close(value, loader_weights[key], rtol=1e-5, atol=1e-6, msg=key)


def test_a_tensor_std_gives_the_same_update_as_a_float():
    first, second = agent_pair()
    replay = filled_replay(OBS, ACT)
    _, with_float = updated_weights(first, replay, 0.4)
    _, with_tensor = updated_weights(second, replay, torch.tensor(0.4))
    for key, value in with_float.items():
        torch.testing.assert_close(value, with_tensor[key], rtol=0, atol=0)


def test_batched_twin_critic_equals_two_separate_critics():
    """Two seeds of twin critics: each (seed, member) is its own plain critic."""
    torch.manual_seed(0)
    twin = TwinCritic(seed_generators([0, 1]), latent_dim=4, action_dim=2, hidden_dim=8)
    assert twin.fc1.weight.shape == (2, 2, 6, 8)  # (seed, member, in, out)
    z, a = torch.randn(2, 7, 4, requires_grad=True), torch.randn(2, 7, 2)
    q = twin(z, a)
    assert q.shape == (2, 2, 7, 1)  # (member, seed, batch, 1)
    x = torch.cat([z, a], -1)
    for seed in range(2):
        for member in range(2):

            def w(layer, s=seed, m=member):
                return layer.weight[s, m], layer.bias[s, m]

            h = x[seed] @ w(twin.fc1)[0] + w(twin.fc1)[1]
            h = nn.functional.layer_norm(h, (8,)) * w(twin.norm)[0] + w(twin.norm)[1]
            h = nn.functional.elu(torch.tanh(h) @ w(twin.fc2)[0] + w(twin.fc2)[1])
            single = h @ w(twin.out)[0] + w(twin.out)[1]
            torch.testing.assert_close(q[member, seed], single)
    (grad_twin,) = torch.autograd.grad(q.sum(), z)
    assert grad_twin.shape == z.shape and torch.isfinite(grad_twin).all()


def test_bf16_autocast_update_is_close_to_fp32_and_keeps_fp32_state():
    fp32, bf16 = agent_pair()
    bf16 = AlmAgent(OBS, ACT, AgentConfig(**{**vars(fp32.cfg), "precision": "bf16"}))
    bf16.load_state_dict(fp32.state_dict())
    replay = filled_replay(OBS, ACT)
    metrics32, _ = updated_weights(fp32, replay, 0.4)
    metrics16, weights16 = updated_weights(bf16, replay, 0.4)
    for key in ("loss/model_bound", "loss/critic", "loss/reward_classifier", "model/kl"):
        assert metrics16[key].dtype == torch.float32
        assert math.isclose(metrics16[key], metrics32[key], rel_tol=0.05, abs_tol=0.05), key
    assert all(v.dtype == torch.float32 for v in weights16.values())
    assert not torch.equal(metrics16["loss/model_bound"], metrics32["loss/model_bound"])


class FreshCastAgent(AlmAgent):
    """Reference for mixed precision: every bf16 forward casts the fp32 weights as they are
    then (autocast's weight-cast cache off), so no loss can see a pre-step copy."""

    def update(self, seq, batch, std):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False):
            return self._update(seq, batch, std)


def test_bf16_losses_see_the_weights_earlier_steps_of_the_update_left():
    """The world, reward and critic steps change weights that the later losses use (the
    model and classifier in the actor's rollout, the critic in its bootstrap): a cached
    bf16 cast from before a step would give a different actor loss (~3% at lr 1e-4)."""
    bf16, _ = agent_pair(precision="bf16")
    fresh = FreshCastAgent(OBS, ACT, bf16.cfg)
    fresh.load_state_dict(bf16.state_dict())
    replay = filled_replay(OBS, ACT)
    metrics, weights = updated_weights(bf16, replay, 0.4)
    fresh_metrics, fresh_weights = updated_weights(fresh, replay, 0.4)
    for key, value in metrics.items():
        torch.testing.assert_close(value, fresh_metrics[key], rtol=1e-6, atol=1e-7, msg=key)
    for key, value in weights.items():
        torch.testing.assert_close(value, fresh_weights[key], rtol=1e-6, atol=1e-7, msg=key)


def test_config_rejects_an_unknown_precision():
    with pytest.raises(ConfigError, match="precision"):
        load_config(None, ["agent.precision=fp8"])


def test_make_updater_is_eager_on_cpu():
    agent, _ = agent_pair()
    updater = make_updater(agent, filled_replay(OBS, ACT))
    assert type(updater) is EagerUpdater and not updater.graphed


def test_graph_updater_falls_back_to_eager_with_identical_numerics():
    """Without a GPU, capture fails: the updater says so once and keeps updating eagerly,
    exactly as the eager updater (the capture itself is exercised only on CUDA)."""
    graphed_agent, eager_agent = agent_pair()
    replay = filled_replay(OBS, ACT)
    graph_updater = CudaGraphUpdater(graphed_agent, replay)
    eager_updater = EagerUpdater(eager_agent, replay)
    torch.manual_seed(5)
    with pytest.warns(AlmWarning, match="CUDA graph capture failed") as said:
        graph_metrics = [graph_updater.step(0.3) for _ in range(6)]
    torch.manual_seed(5)
    eager_metrics = [eager_updater.step(0.3) for _ in range(6)]
    assert not graph_updater.graphed
    assert len(said) == 1
    for got, want in zip(graph_metrics, eager_metrics, strict=True):
        assert set(got) == set(want)
        for key in want:
            torch.testing.assert_close(got[key], want[key].float(), rtol=0, atol=0)
    for key, value in graphed_agent.wm.state_dict().items():
        assert torch.equal(value, eager_agent.wm.state_dict()[key])


@pytest.mark.slow
def test_bench_command_reports_every_figure(tmp_path):
    """Eager and fused in one run (--compare-fused), at test_fused's tiny sizes (whose
    compiled graph Inductor's cache may already hold), with the profile."""
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        alm,
        [
            "bench",
            "--device",
            "cpu",
            "--env",
            "InvertedPendulum-v5",
            "--updates",
            "5",
            "--json",
            "--out",
            str(out),
            "--compare-fused",
            "--profile",
            "threads=1",
            "agent.batch_size=16",
            "agent.hidden_dim=32",
            "agent.model_hidden_dim=32",
            "agent.latent_dim=8",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert json.loads(result.stdout) == report  # stderr: torch's own warnings, if any
    assert report["env"] == "InvertedPendulum-v5" and report["device"] == "cpu"
    assert report["threads"] == 1 and report["batch_size"] == 16
    assert len(report["updates_per_sec_windows"]) == 5
    assert report["updates_per_sec"] > 0 and report["env_steps_per_sec"] > 0
    assert report["matmul_gflops"] > 1.0
    # two 32-wide model layers alone: 2 * 16 * 32 * 32 FLOP per forward call
    assert report["flops_per_update"] > 2 * 16 * 32 * 32
    assert report["efficiency_own_count"] == pytest.approx(
        report["flops_per_update"] * report["updates_per_sec"] / 1e9 / report["matmul_gflops"]
    )
    assert report["matmul_floor_updates_per_sec"] == pytest.approx(
        report["matmul_gflops"] * 1e9 / report["flops_per_update"]
    )
    assert report["peak_rss_mib"] > 50 and report["cuda_max_allocated_mib"] is None
    assert report["fused"] and report["compile_seconds"] > 0
    assert report["compile_cache"] in ("hit", "miss")
    assert report["fused_speedup"] == pytest.approx(
        report["updates_per_sec"] / report["eager_updates_per_sec"]
    )
    profile = report["profile"]
    assert profile["device"] == "cpu" and profile["ops_per_update"] > 10
    names = [row[0] for row in profile["top"]]
    assert any(name in ("aten::mm", "aten::addmm", "aten::bmm") for name in names), names
    # a fused update leaves Inductor's fused loops out of ATen: far fewer ops than eager's
    assert profile["ops_per_update"] < 2000


def test_bench_rejects_bad_input():
    result = CliRunner().invoke(alm, ["bench", "--env", "NoSuchEnv-v0"])
    assert result.exit_code == 2 and "NoSuchEnv-v0" in result.output
    result = CliRunner().invoke(alm, ["bench", "agent.precision=fp8"])
    assert result.exit_code == 2 and "precision" in result.output


def test_cpu_ceiling_makes_activations_free_and_restores_them():
    """benchmarks/cpu_ceiling.py: inside ``free_activations`` the networks are the affine
    maps left without tanh, ELU and the LayerNorm normalisation; outside, themselves again."""
    ceiling = load_benchmark("cpu_ceiling")
    torch.manual_seed(0)
    head = mlp([None], 4, 8, 3, normalized_head=True)  # one seed
    twin = TwinCritic([None], latent_dim=3, action_dim=1, hidden_dim=8)
    x, z, a = torch.randn(1, 5, 4), torch.randn(1, 5, 3), torch.randn(1, 5, 1)
    head_before, twin_before = head(x), twin(z, a)
    with ceiling.free_activations():
        first, norm, _, second, _, last = head
        expected = last(second(first(x) * norm.weight + norm.bias))
        torch.testing.assert_close(head(x), expected)
        h = torch.cat([z, a], -1)[0]
        for member in range(2):
            g = h @ twin.fc1.weight[0, member] + twin.fc1.bias[0, member]
            g = g * twin.norm.weight[0, member] + twin.norm.bias[0, member]
            g = g @ twin.fc2.weight[0, member] + twin.fc2.bias[0, member]
            single = g @ twin.out.weight[0, member] + twin.out.bias[0, member]
            torch.testing.assert_close(twin(z, a)[member, 0], single)
        assert not torch.allclose(head(x), head_before)
    torch.testing.assert_close(head(x), head_before, rtol=0, atol=0)
    torch.testing.assert_close(twin(z, a), twin_before, rtol=0, atol=0)


def test_under_bf16_autocast_the_hidden_layers_run_in_bf16_and_every_output_layer_in_fp32():
    """bf16 learned far worse than fp32 with bf16 output layers (benchmarks/README.md): a
    latent mean near 30 or a Q-value near 300 kept only 8 bits of mantissa."""
    agent, _ = agent_pair(precision="bf16")
    wm = agent.wm
    z, a = torch.randn(1, 4, 6), torch.randn(1, 4, ACT)  # one seed
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = wm.encoder.net[:-1](torch.randn(1, 4, OBS))
        raw = wm.encoder.net[-1](hidden)
        q = wm.critic(z, a)
    assert hidden.dtype == torch.bfloat16 and raw.dtype == torch.float32
    last = wm.encoder.net[-1]
    assert last.weight.shape == (1, 32, 12)  # (S, in, out): hidden_dim -> 2 * latent_dim
    torch.testing.assert_close(
        raw, torch.baddbmm(last.bias, hidden.float(), last.weight), rtol=0, atol=0
    )
    # the twin critic's output layer: fp32 products of the bf16 hidden activations
    assert q.dtype == torch.float32 and wm.critic.out.fp32
    q_fp32 = wm.critic(z, a)
    assert (q - q_fp32).abs().max() < 0.05 * q_fp32.abs().max() + 1e-3
