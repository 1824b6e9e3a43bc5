"""The CUDA core on a GPU: graph replay, capturable Adam, sampling on the device, the eager
fallback, and a whole run. These need a GPU and are skipped without one;
``benchmarks/gpu_check.sh`` runs them on the lent GPU machine (its CPU mode, tested in
test_gpu_check.py, runs the rest of that script here)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import filled_replay, train_tiny_run

from alm_offline.config import AgentConfig
from alm_offline.core.agent import AlmAgent
from alm_offline.core.replay import ReplayBuffer, SeedReplay
from alm_offline.core.updater import CudaGraphUpdater, EagerUpdater, make_updater
from alm_offline.errors import AlmWarning
from alm_offline.training.checkpoint import checkpoint_path, load_agent

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

OBS, ACT = 5, 2
UPDATES = 8  # 3 eager warm-up updates, then 5 graph replays
TOL = {"fp32": {"rtol": 1e-5, "atol": 1e-5}, "bf16": {"rtol": 1e-3, "atol": 1e-3}}


def cuda_pair(**overrides) -> tuple[AlmAgent, AlmAgent]:
    """Two CUDA agents with identical weights and optimiser settings."""
    cfg = AgentConfig(hidden_dim=32, model_hidden_dim=48, latent_dim=6, batch_size=16, **overrides)
    torch.manual_seed(0)
    first, second = AlmAgent(OBS, ACT, cfg, "cuda"), AlmAgent(OBS, ACT, cfg, "cuda")
    second.load_state_dict(first.state_dict())
    return first, second


def cuda_replay() -> ReplayBuffer:
    cpu = filled_replay(OBS, ACT)
    replay = ReplayBuffer(cpu.capacity, OBS, ACT, cpu.seq_len, "cuda")
    replay.load_state_dict(cpu.state_dict())
    return replay


def run_updates(updater: EagerUpdater, seed: int = 5) -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    return [updater.step(0.3) for _ in range(UPDATES)]


def assert_same_updates(got_agent, want_agent, got_metrics, want_metrics) -> None:
    """Same metrics and weights, to 1e-5 in fp32 (bf16 rounding may flip an ulp: 1e-3)."""
    tol = TOL[got_agent.cfg.precision]
    for got, want in zip(got_metrics, want_metrics, strict=True):
        assert set(got) == set(want)
        for key in want:
            torch.testing.assert_close(got[key], want[key].float(), **tol)
    want_weights = want_agent.wm.state_dict()
    for key, value in got_agent.wm.state_dict().items():
        torch.testing.assert_close(value, want_weights[key], **tol)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graph_replay_equals_eager_over_several_updates(precision):
    graphed_agent, eager_agent = cuda_pair(precision=precision)
    replay = cuda_replay()
    graph_updater = make_updater(graphed_agent, replay)
    assert isinstance(graph_updater, CudaGraphUpdater)
    graph_metrics = run_updates(graph_updater)
    assert graph_updater.graphed
    eager_metrics = run_updates(EagerUpdater(eager_agent, replay))
    assert_same_updates(graphed_agent, eager_agent, graph_metrics, eager_metrics)
    # the weights moved: the replays ran real updates, not a no-op graph
    start, _ = cuda_pair(precision=precision)
    moved = [
        (graphed_agent.wm.state_dict()[k] - v).abs().max()
        for k, v in start.wm.state_dict().items()
        if v.is_floating_point()
    ]
    assert max(moved) > 1e-4


def test_adam_is_capturable_and_counts_its_steps_on_the_device():
    agent, _ = cuda_pair()
    updater = make_updater(agent, cuda_replay())
    run_updates(updater)
    assert updater.graphed
    for optimizer in agent.optimizers.values():
        assert all(group["capturable"] for group in optimizer.param_groups)
        for state in optimizer.state.values():
            assert state["step"].device.type == "cuda"
            assert float(state["step"]) == UPDATES  # replays advanced the device-side count


def test_a_graphed_update_samples_on_the_device_with_no_host_sync():
    agent, _ = cuda_pair()
    replay = cuda_replay()
    sequences = replay.sample_sequences(16)
    assert sequences.obs.device.type == "cuda" and sequences.obs.shape == (4, 16, OBS)
    seeded = SeedReplay.shared(replay, 1).sample_sequences(16)  # what the updater samples
    assert seeded.obs.device.type == "cuda" and seeded.obs.shape == (1, 4, 16, OBS)
    updater = make_updater(agent, replay)
    run_updates(updater)
    std = torch.tensor(0.2, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        metrics = [updater.step(std) for _ in range(3)]  # raises on any device -> host sync
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(value.device.type == "cuda" for value in metrics[-1].values())
    assert all(value.shape == (1,) for value in metrics[-1].values())  # one per seed
    assert torch.isfinite(torch.stack(list(metrics[-1].values()))).all()


def test_a_failed_capture_falls_back_to_eager_with_the_same_numerics(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "graph", refuse)
    graphed_agent, eager_agent = cuda_pair()
    replay = cuda_replay()
    graph_updater = make_updater(graphed_agent, replay)
    with pytest.warns(AlmWarning, match="CUDA graph capture failed") as said:
        graph_metrics = run_updates(graph_updater)
    assert not graph_updater.graphed and len(said) == 1
    eager_metrics = run_updates(EagerUpdater(eager_agent, replay))
    assert_same_updates(graphed_agent, eager_agent, graph_metrics, eager_metrics)


def test_an_online_run_on_cuda_trains_evaluates_and_loads_on_the_cpu(tmp_path):
    run_dir = train_tiny_run(tmp_path / "run", "device=cuda", "eval.latent=sample")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] == 300 and summary["updates"] == 200
    assert len(summary["evaluations"]) == 2
    agent, cfg, _ = load_agent(checkpoint_path(run_dir), "cpu")
    assert cfg.device == "cuda" and cfg.eval.latent == "sample"
    assert next(agent.wm.parameters()).device.type == "cpu"


def test_tf32_is_set_by_each_agent_and_not_inherited_by_a_later_fp32_one():
    AlmAgent(OBS, ACT, AgentConfig(hidden_dim=32, precision="tf32"), "cuda")
    assert torch.backends.cuda.matmul.allow_tf32
    AlmAgent(OBS, ACT, AgentConfig(hidden_dim=32), "cuda")
    assert not torch.backends.cuda.matmul.allow_tf32


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_fused_update_inside_the_cuda_graph_equals_eager(precision):
    """agent.compile=on on CUDA: the first update eager, the next two compiled (Inductor's
    Triton kernels) on the warm-up stream, then the compiled update captured in the graph."""
    cfg = AgentConfig(
        hidden_dim=32, model_hidden_dim=48, latent_dim=6, batch_size=16, precision=precision
    )
    torch.manual_seed(0)
    eager_agent = AlmAgent(OBS, ACT, cfg, "cuda", fused=False)
    fused_agent = AlmAgent(OBS, ACT, cfg, "cuda", fused=True)
    fused_agent.load_state_dict(eager_agent.state_dict())
    replay = cuda_replay()
    graph_updater = make_updater(fused_agent, replay)
    fused_metrics = run_updates(graph_updater)
    assert graph_updater.graphed and fused_agent.fused_update.report is not None
    eager_metrics = run_updates(EagerUpdater(eager_agent, replay))
    tol = {"fp32": {"rtol": 1e-4, "atol": 1e-5}, "bf16": {"rtol": 1e-2, "atol": 1e-2}}[precision]
    for got, want in zip(fused_metrics, eager_metrics, strict=True):
        for key in want:
            torch.testing.assert_close(got[key], want[key].float(), **tol)
    for key, value in fused_agent.wm.state_dict().items():
        torch.testing.assert_close(value, eager_agent.wm.state_dict()[key], **tol)
