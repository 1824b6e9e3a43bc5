"""Many seeds, one process: S agents trained as one batched computation stay independent.

The properties: a seed's update does not see another seed's batch or weights (bitwise);
seed i in a batch of N computes what a one-seed agent of seed i computes from the same
weights, batch and noise; a batched run is reproducible and resumes exactly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import (
    TINY_OVERRIDES,
    filled_replay,
    reproducible_evals,
    seed_batches,
    train_tiny_run,
)

from alm_offline.config import AgentConfig
from alm_offline.core.agent import AlmAgent, seed_state, stack_seed_states
from alm_offline.core.metrics import MetricsWindow, NonFiniteError
from alm_offline.core.replay import SequenceBatch, TransitionBatch
from alm_offline.training.checkpoint import checkpoint_path, read_checkpoint

OBS, ACT = 5, 2
CFG = AgentConfig(hidden_dim=32, model_hidden_dim=48, latent_dim=6, batch_size=16, bc_weight=0.5)


def batches(seeds: int, seed: int = 0) -> tuple[SequenceBatch, TransitionBatch]:
    torch.manual_seed(seed)
    return seed_batches(filled_replay(OBS, ACT), CFG.batch_size, seeds)


def weights(agent: AlmAgent) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in agent.wm.state_dict().items()}


def updated(agent: AlmAgent, seq, batch, updates: int = 3, noise_seed: int = 7):
    torch.manual_seed(noise_seed)
    metrics = [agent.update(seq, batch, 0.3) for _ in range(updates)]
    return metrics, weights(agent)


def with_row(batch, row: int, change):
    """``batch`` (a dataclass of (S, ...) tensors) with seed ``row``'s tensors changed."""
    fields = {}
    for name, value in vars(batch).items():
        value = value.clone()
        value[row] = change(value[row])
        fields[name] = value
    return type(batch)(**fields)


def test_each_seed_starts_from_its_own_weights():
    batched = AlmAgent(OBS, ACT, CFG, seeds=(4, 9, 2))
    alone = AlmAgent(OBS, ACT, CFG, seeds=(9,))
    for key, value in alone.wm.state_dict().items():
        assert torch.equal(batched.wm.state_dict()[key][1:2], value), key
    first, second = weights(batched), weights(AlmAgent(OBS, ACT, CFG, seeds=(4, 9, 2)))
    assert all(torch.equal(first[k], second[k]) for k in first)
    encoder = batched.wm.encoder.net[0].weight
    assert not torch.equal(encoder[0], encoder[2])  # different seeds, different weights


@pytest.mark.parametrize("what", ["batch", "weights"])
def test_perturbing_one_seed_leaves_the_others_bit_identical(what):
    seq, batch = batches(3)
    reference = AlmAgent(OBS, ACT, CFG, seeds=(1, 2, 3))
    perturbed = AlmAgent(OBS, ACT, CFG, seeds=(1, 2, 3))
    if what == "batch":
        seq_p = with_row(seq, 2, lambda x: x * 3.0 + 1.0)
        batch_p = with_row(batch, 2, lambda x: x.flip(0))
    else:
        seq_p, batch_p = seq, batch
        with torch.no_grad():
            for param in perturbed.wm.parameters():
                param[2] += 0.5 * torch.randn_like(param[2])
    m_ref, w_ref = updated(reference, seq, batch)
    m_per, w_per = updated(perturbed, seq_p, batch_p)
    for key in w_ref:
        assert torch.equal(w_ref[key][:2], w_per[key][:2]), key  # seeds 1 and 2: bitwise
    moved = sum(not torch.equal(w_ref[key][2], w_per[key][2]) for key in w_ref)
    assert moved > 20  # seed 3 itself did change
    for step_ref, step_per in zip(m_ref, m_per, strict=True):
        for key in step_ref:
            assert torch.equal(step_ref[key][:2], step_per[key][:2]), key


class NoiseTape:
    """Records every random draw of a batched update and replays one seed's rows of them
    to a one-seed update, so both see the same noise."""

    def __init__(self, monkeypatch) -> None:
        self.monkeypatch, self.draws = monkeypatch, []
        self.randn_like, self.rand = torch.randn_like, torch.rand

    def record(self) -> None:
        def randn_like(x, *args, **kwargs):
            out = self.randn_like(x, *args, **kwargs)
            self.draws.append(out)
            return out

        def rand(*args, **kwargs):
            out = self.rand(*args, **kwargs)
            self.draws.append(out)
            return out

        self.monkeypatch.setattr(torch, "randn_like", randn_like)
        self.monkeypatch.setattr(torch, "rand", rand)

    def replay(self, row: int) -> None:
        draws = iter(list(self.draws))

        def next_draw(shape) -> torch.Tensor:
            out = next(draws)[row : row + 1]
            assert out.shape == torch.Size(shape), (out.shape, shape)
            return out.clone()

        self.monkeypatch.setattr(torch, "randn_like", lambda x, *a, **k: next_draw(x.shape))
        self.monkeypatch.setattr(
            torch, "rand", lambda *shape, **k: next_draw(shape[0] if len(shape) == 1 else shape)
        )


@pytest.mark.parametrize("row", [0, 2])
def test_a_seed_in_a_batch_updates_as_it_would_alone(monkeypatch, row):
    """Same weights, batch and noise: seed ``row`` of five gives a one-seed agent's metrics
    and weights after 3 updates (to 1e-5; the products run as bmm either way)."""
    seeds = (11, 12, 13, 14, 15)
    seq, batch = batches(len(seeds))
    tape = NoiseTape(monkeypatch)
    tape.record()
    m_batched, w_batched = updated(AlmAgent(OBS, ACT, CFG, seeds=seeds), seq, batch)
    tape.replay(row)

    def one(x: torch.Tensor) -> torch.Tensor:
        return x[row : row + 1]

    seq_one = SequenceBatch(**{k: one(v) for k, v in vars(seq).items()})
    batch_one = TransitionBatch(**{k: one(v) for k, v in vars(batch).items()})
    alone = AlmAgent(OBS, ACT, CFG, seeds=(seeds[row],))
    m_alone, w_alone = updated(alone, seq_one, batch_one)
    for step_b, step_a in zip(m_batched, m_alone, strict=True):
        for key in step_a:
            torch.testing.assert_close(one(step_b[key]), step_a[key], rtol=1e-5, atol=1e-5)
    for key, value in w_alone.items():
        torch.testing.assert_close(one(w_batched[key]), value, rtol=1e-5, atol=1e-5, msg=key)


def test_gradient_clipping_is_per_seed():
    """A seed whose gradients are huge is clipped; its neighbour's step is its own."""
    seq, batch = batches(2)
    big = with_row(batch, 1, lambda x: x * 1e4)
    agent = AlmAgent(OBS, ACT, replace(CFG, max_grad_norm=1.0), seeds=(1, 2))
    torch.manual_seed(0)
    metrics = agent.update(seq, big, 0.3)
    norms = metrics["grad_norm/critic"]
    assert norms.shape == (2,) and norms[1] > 100 * norms[0]
    alone = AlmAgent(OBS, ACT, replace(CFG, max_grad_norm=1.0), seeds=(1, 2))
    torch.manual_seed(0)
    clean = alone.update(seq, batch, 0.3)
    torch.testing.assert_close(clean["grad_norm/critic"][0], norms[0], rtol=0, atol=0)
    # a clip by the norm over both seeds would have shrunk seed 1's step: it did not
    for key, value in weights(alone).items():
        assert torch.equal(weights(agent)[key][0], value[0]), key


def test_seed_states_slice_and_stack_back():
    seq, batch = batches(3)
    agent = AlmAgent(OBS, ACT, CFG, seeds=(1, 2, 3))
    updated(agent, seq, batch, updates=1)
    state = agent.state_dict()
    parts = [seed_state(state, index) for index in range(3)]
    single = AlmAgent(OBS, ACT, CFG)  # a one-seed agent loads one part, as alm eval does
    single.load_state_dict(parts[1])
    assert torch.equal(single.wm.encoder.net[0].weight[0], agent.wm.encoder.net[0].weight[1])
    again = AlmAgent(OBS, ACT, CFG, seeds=(7, 8, 9))
    again.load_state_dict(stack_seed_states(parts))
    _, w_first = updated(agent, seq, batch, updates=2)
    _, w_again = updated(again, seq, batch, updates=2)
    assert all(torch.equal(w_first[k], w_again[k]) for k in w_first)


def test_a_non_finite_seed_is_named():
    window = MetricsWindow((4, 7, 9))
    window.add(10, {"loss/critic": torch.tensor([1.0, 2.0, 3.0])})
    window.add(11, {"loss/critic": torch.tensor([1.0, 2.0, float("nan")])})
    with pytest.raises(NonFiniteError, match="loss/critic at update 11 of seed 9"):
        window.check_finite()


def run_files(run_dir: Path) -> dict[str, bytes | list[dict]]:
    """Each config.yaml's bytes and each eval.jsonl's reproducible rows, by relative path."""
    return {
        str(p.relative_to(run_dir)): (
            reproducible_evals(p.parent) if p.name == "eval.jsonl" else p.read_bytes()
        )
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name in ("eval.jsonl", "config.yaml")
    }


def test_a_batched_run_is_reproducible_and_each_seed_is_an_ordinary_run_dir(tmp_path):
    first = train_tiny_run(tmp_path / "a", "seeds=3,1,2")
    second = train_tiny_run(tmp_path / "b", "seeds=3,1,2")
    assert sorted(p.name for p in first.iterdir() if p.is_dir()) == ["s1", "s2", "s3"]
    files_a, files_b = run_files(first), run_files(second)
    assert set(files_a) == {
        "config.yaml",
        *(f"s{s}/{name}" for s in (1, 2, 3) for name in ("config.yaml", "eval.jsonl")),
    }
    for name in files_a:
        if name.endswith("eval.jsonl"):
            assert files_a[name] == files_b[name], name
    for seed in (1, 2, 3):
        a = read_checkpoint(checkpoint_path(first / f"s{seed}"))
        b = read_checkpoint(checkpoint_path(second / f"s{seed}"))
        assert a["config"]["seed"] == seed and a["config"]["seeds"] == []
        for key, value in a["agent"]["world_model"].items():
            assert value.shape[0] == 1 and torch.equal(value, b["agent"]["world_model"][key])
    summary = json.loads((first / "summary.json").read_text())
    assert summary["seeds"] == [3, 1, 2] and len(summary["eval_return_mean_seeds"]) == 3
    seed_summary = json.loads((first / "s2" / "summary.json").read_text())
    assert summary["eval_return_mean_seeds"][2] == seed_summary["eval_return_mean"]
    assert seed_summary["seeds_in_process"] == 3
    # the seeds are different agents
    encoders = [
        read_checkpoint(checkpoint_path(first / f"s{s}"))["agent"]["world_model"] for s in (1, 2, 3)
    ]
    key = "encoder.net.0.weight"
    assert not torch.equal(encoders[0][key], encoders[1][key])


def _wait_for_checkpoints(run_dir: Path, seeds, min_steps: int, proc, timeout: float = 180):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training ended before it could be killed"
        steps = []
        for seed in seeds:
            path = checkpoint_path(run_dir / f"s{seed}")
            if path.exists():
                try:
                    steps.append(torch.load(path, weights_only=True)["counters"]["env_steps"])
                except Exception:  # mid-rename: try again
                    break
        if len(steps) == len(seeds) and min(steps) >= min_steps and len(set(steps)) == 1:
            return steps[0]
        time.sleep(0.2)
    raise AssertionError("no checkpoints appeared in time")


@pytest.mark.slow
def test_a_killed_batched_run_resumes_every_seed_exactly(tmp_path):
    """SIGKILL a real 3-seed process mid-run (mid-episode for some seed); the resumed run
    equals an uninterrupted one, seed by seed, bitwise."""
    seeds = (1, 2, 3)
    common = [
        *TINY_OVERRIDES,
        "steps=900",
        "checkpoint_every=50",
        "agent.buffer_size=3000",
        "eval.every=300",
        f"seeds={','.join(map(str, seeds))}",
    ]
    cli = [sys.executable, "-m", "cli", "train-online", "--quiet"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([*cli, *common, f"run_dir={killed}"])
    try:
        saved = _wait_for_checkpoints(killed, seeds, 350, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and 350 <= saved < 900
    resumed = subprocess.run(
        [sys.executable, "-m", "cli", "train-online", "--resume", str(killed), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    done = subprocess.run([*cli, *common, f"run_dir={clean}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    tapes = []
    for seed in seeds:
        a = read_checkpoint(checkpoint_path(killed / f"s{seed}"))
        b = read_checkpoint(checkpoint_path(clean / f"s{seed}"))
        assert a["counters"]["env_steps"] == b["counters"]["env_steps"] == 900
        torch.testing.assert_close(a["replay"]["obs"], b["replay"]["obs"], rtol=0, atol=0)
        for key, value in b["agent"]["world_model"].items():
            assert torch.equal(a["agent"]["world_model"][key], value), (seed, key)
        rows = reproducible_evals(killed / f"s{seed}")
        assert rows == reproducible_evals(clean / f"s{seed}")
        assert [row["env_step"] for row in rows] == [300, 600, 900]
        tapes.append(len(a["rng"]["env"]["actions"]))
    assert any(tape > 0 for tape in tapes)  # some env was mid-episode at the end


def test_the_fused_update_of_three_seeds_matches_the_eager_one():
    """The compiled graph holds the seed dim too: per-seed clipping and Adam as tensor ops
    give the eager update's metrics and weights (3 updates, 3 seeds). aot_eager traces the
    whole graph as Inductor does (Inductor itself passed this by hand on 2026-12-03;
    test_fused.py compiles it for one seed)."""
    backend = "aot_eager"
    seeds = (1, 2, 3)
    seq, batch = batches(len(seeds))
    big = with_row(batch, 1, lambda x: x * 100.0)  # one seed clipped, the others not
    cfg = replace(CFG, max_grad_norm=5.0)
    eager = AlmAgent(OBS, ACT, cfg, seeds=seeds, fused=False)
    fused = AlmAgent(OBS, ACT, cfg, seeds=seeds, fused=True, fused_backend=backend)
    m_eager, w_eager = updated(eager, seq, big)
    m_fused, w_fused = updated(fused, seq, big)
    assert fused.fused_update.report is not None and not fused.fused_update.failed
    for row_e, row_f in zip(m_eager, m_fused, strict=True):
        for key, value in row_e.items():
            assert value.shape == (3,)
            torch.testing.assert_close(row_f[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert float(m_eager[-1]["grad_norm/critic"][1]) > 5.0  # seed 2 was clipped
    for key, value in w_eager.items():
        torch.testing.assert_close(w_fused[key], value, rtol=1e-4, atol=1e-5, msg=key)
