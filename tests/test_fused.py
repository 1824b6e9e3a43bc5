"""The fused update (agent.compile, fused.py) computes what the eager one does."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from conftest import filled_replay

from alm_offline.config import AgentConfig, ConfigError, load_config
from alm_offline.core.agent import AlmAgent
from alm_offline.core.fused import AUTO_MIN_UPDATES, fusion_decision
from alm_offline.core.replay import ReplayBuffer

OBS, ACT = 4, 1  # InvertedPendulum-v5's, as the tiny training runs of conftest
TINY = dict(hidden_dim=32, model_hidden_dim=32, latent_dim=8, batch_size=16)
ABLATIONS = {
    "no-kl": {"kl_coef": 0.0},
    "no-value": {"value_in_encoder_loss": False},
    "no-classifier-reward": {"classifier_coef": 0.0},
    "td3-actor": {"actor_loss": "td3"},
    "entropy-bonus": {"entropy_bonus": 0.1},
    "action-penalty": {"action_penalty": 0.5},
    "log-reward-shift": {"log_reward_shift": 10.0},
    "linear-classifier": {"classifier": "linear"},
    "identity-encoder": {"encoder": "identity"},
    "reconstruction": {"encoder_objective": "reconstruction"},
    "obs-norm": {"obs_norm": True},
    "bf16": {"precision": "bf16"},
    "offline-behaviour-kl": {"bc_weight": 1.0, "bc_term": "behaviour-kl"},
    "behaviour-kl-td3-actor": {"bc_weight": 1.0, "bc_term": "behaviour-kl", "actor_loss": "td3"},
    "termination": {"termination": "learned"},  # issue 47: the head, survival, the masked Q
}


def eager_and_fused(backend: str, **overrides) -> tuple[AlmAgent, AlmAgent]:
    """An eager and a fused agent with the same weights."""
    cfg = AgentConfig(**{**TINY, **overrides})
    torch.manual_seed(0)
    eager = AlmAgent(OBS, ACT, cfg, fused=False)
    fused = AlmAgent(OBS, ACT, cfg, fused=True, fused_backend=backend)
    fused.load_state_dict(eager.state_dict())
    return eager, fused


def one_seed(batch):
    """A plain buffer's batch with the leading seed dim (S = 1) that ``agent.update`` takes."""
    return type(batch)(**{f.name: getattr(batch, f.name).unsqueeze(0) for f in fields(batch)})


def run_updates(agent: AlmAgent, replay: ReplayBuffer, count: int) -> list[dict]:
    """``count`` updates on seeded batches with seeded noise; every update's metrics."""
    assert agent.num_seeds == 1
    rows = []
    for step in range(count):
        generator = torch.Generator().manual_seed(100 + step)
        seq = one_seed(replay.sample_sequences(agent.cfg.batch_size, generator))
        batch = one_seed(replay.sample_transitions(agent.cfg.batch_size, generator))
        torch.manual_seed(200 + step)
        std = 0.5 - 0.02 * step  # a schedule: a float per update must not recompile
        rows.append({k: v.clone() for k, v in agent.update(seq, batch, std).items()})
    return rows


def assert_same_updates(eager: AlmAgent, fused: AlmAgent, count: int) -> None:
    """Metrics of every update, every weight and every optimiser tensor within 1e-4."""
    replay = filled_replay(OBS, ACT, eager.cfg.seq_len)
    if eager.cfg.obs_norm:
        for agent in (eager, fused):
            agent.set_observation_stats(replay.observations())
    before = {k: v.clone() for k, v in eager.wm.state_dict().items()}
    eager_rows, fused_rows = run_updates(eager, replay, count), run_updates(fused, replay, count)
    for eager_row, fused_row in zip(eager_rows, fused_rows, strict=True):
        assert eager_row.keys() == fused_row.keys()
        for key, value in eager_row.items():
            torch.testing.assert_close(fused_row[key], value, rtol=1e-4, atol=1e-5, msg=key)
    moved = 0
    for key, value in eager.wm.state_dict().items():
        torch.testing.assert_close(fused.wm.state_dict()[key], value, rtol=1e-4, atol=1e-6)
        moved += not torch.equal(value, before[key])
    assert moved > 10  # the updates really changed the networks
    for name, opt in eager.optimizers.items():
        for param, state in opt.state.items():
            other = fused.optimizers[name].state[fused_param(fused, eager, name, param)]
            assert float(other["step"]) == float(state["step"]) == count
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(other[key], state[key], rtol=1e-4, atol=1e-7)


def fused_param(fused: AlmAgent, eager: AlmAgent, group: str, param: torch.Tensor):
    return fused.groups[group][[p is param for p in eager.groups[group]].index(True)]


@pytest.mark.slow
def test_inductor_fused_update_matches_eager_for_8_updates():
    """Offline (the BC term on): its graph holds every online term too, so one compile covers
    both (the online graph alone traced in the aot_eager tests below; 3 seeds in
    tests/test_seeds.py)."""
    eager, fused = eager_and_fused("inductor", bc_weight=0.06, bc_term="likelihood")
    assert_same_updates(eager, fused, 8)
    report = fused.fused_update.report
    assert report is not None and report.seconds > 0 and report.cache in ("hit", "miss")


@pytest.mark.slow
def test_inductor_fused_bf16_stays_near_eager_bf16_and_keeps_fp32_state():
    """Under bf16 Inductor fuses the casts into its loops, so roundings may fall elsewhere
    than eager's: within bf16's noise after 8 updates, and every weight, Adam moment and
    metric still fp32."""
    eager, fused = eager_and_fused("inductor", precision="bf16")
    replay = filled_replay(OBS, ACT)
    eager_rows, fused_rows = run_updates(eager, replay, 8), run_updates(fused, replay, 8)
    for eager_row, fused_row in zip(eager_rows, fused_rows, strict=True):
        for key, value in eager_row.items():
            assert fused_row[key].dtype == torch.float32, key
            torch.testing.assert_close(fused_row[key], value, rtol=2e-2, atol=1e-2, msg=key)
    for key, value in eager.wm.state_dict().items():
        got = fused.wm.state_dict()[key]
        assert got.dtype == value.dtype == torch.float32
        torch.testing.assert_close(got, value, rtol=2e-2, atol=1e-4)
    states = [s for opt in fused.optimizers.values() for s in opt.state.values()]
    assert {s[k].dtype for s in states for k in ("exp_avg", "exp_avg_sq")} == {torch.float32}
    assert fused.fused_update.report is not None


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_every_ablation_traces_as_one_graph_and_matches_eager(name):
    """aot_eager: Dynamo's full-graph trace and AOTAutograd's joint graph, without Inductor's
    code generation (the inductor test above covers that at the main settings)."""
    eager, fused = eager_and_fused("aot_eager", **ABLATIONS[name])
    assert_same_updates(eager, fused, 3)


def test_first_update_is_eager_and_later_ones_compiled():
    _, fused = eager_and_fused("aot_eager")
    replay = filled_replay(OBS, ACT)
    assert not fused.compiles_next_update
    run_updates(fused, replay, 1)
    assert fused.fused_update.report is None  # Adam's state did not exist yet
    assert fused.compiles_next_update
    run_updates(fused, replay, 1)
    assert not fused.compiles_next_update
    assert fused.fused_update.report is not None and fused.fused_update.report.cache == "none"


def test_fusion_decision():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fusion_decision("on", 1, cpu)[0] and fusion_decision("on", 1, cuda)[0]
    assert not fusion_decision("off", 10**9, cpu)[0]
    assert fusion_decision("auto", AUTO_MIN_UPDATES, cpu)[0]
    fused, why = fusion_decision("auto", AUTO_MIN_UPDATES - 1, cpu)
    assert not fused and str(AUTO_MIN_UPDATES) in why
    assert not fusion_decision("auto", 10**9, cuda)[0]
    # seed-updates: five seeds of 2000 updates do a 10,000-update run's work
    fused, why = fusion_decision("auto", AUTO_MIN_UPDATES // 5, cpu, seeds=5)
    assert fused and "x 5 seeds" in why
    assert not fusion_decision("auto", AUTO_MIN_UPDATES // 5 - 1, cpu, seeds=5)[0]


def test_compile_setting_takes_modes_and_booleans():
    assert load_config(None, ()).agent.compile == "auto"
    for given, mode in (("true", "on"), ("false", "off"), ("on", "on"), ("AUTO", "auto")):
        assert load_config(None, (f"agent.compile={given}",)).agent.compile == mode
    with pytest.raises(ConfigError, match=r"agent\.compile must be one of auto, on, off"):
        load_config(None, ("agent.compile=sometimes",))


@pytest.mark.slow
def test_a_fused_training_run_reports_its_compile_and_resumes_fused(tmp_path):
    """agent.compile=on end to end: the summary says the update was fused, how long the
    compile took and whether Inductor's cache held it; a resume continues fused."""
    import json

    from click.testing import CliRunner
    from conftest import train_tiny_run

    from cli import alm

    run_dir = train_tiny_run(tmp_path / "run", "agent.compile=on")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["fused_update"] is True and summary["fused_update_reason"] == "agent.compile=on"
    assert summary["compile_seconds"] > 0 and summary["compile_cache"] in ("hit", "miss")
    assert summary["updates"] == 200  # 300 steps after 100 of warm-up
    result = CliRunner().invoke(
        alm, ["train-online", "--resume", str(run_dir), "steps=400"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "fused update: compiled in" in result.output
    resumed = json.loads((run_dir / "summary.json").read_text())
    assert resumed["updates"] == 300 and resumed["fused_update"] is True


def test_auto_keeps_a_short_run_eager(tmp_path):
    import json

    from conftest import train_tiny_run

    summary = json.loads((train_tiny_run(tmp_path / "run") / "summary.json").read_text())
    assert summary["fused_update"] is False and "compile_seconds" not in summary
    assert str(AUTO_MIN_UPDATES) in summary["fused_update_reason"]


@pytest.mark.slow
def test_a_failed_compile_warns_once_and_updates_eagerly(tmp_path, monkeypatch):
    """No working C++ compiler for Inductor: one AlmWarning, then eager updates that equal
    an eager agent's (the failing update was not applied twice)."""
    import torch._inductor.config as inductor_config

    from alm_offline.errors import AlmWarning

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(inductor_config.cpp, "cxx", ("no-such-c++-compiler",))
    eager, fused = eager_and_fused("inductor", latent_dim=7)  # a graph no cache holds
    replay = filled_replay(OBS, ACT)
    with pytest.warns(AlmWarning, match="could not be compiled, updating eagerly") as caught:
        fused_rows = run_updates(fused, replay, 4)
    assert len([w for w in caught if issubclass(w.category, AlmWarning)]) == 1
    assert fused.fused_update.failed and fused.fused_update.report is None
    eager_rows = run_updates(eager, replay, 4)
    for eager_row, fused_row in zip(eager_rows, fused_rows, strict=True):
        for key, value in eager_row.items():
            torch.testing.assert_close(fused_row[key], value, rtol=1e-6, atol=1e-7, msg=key)
