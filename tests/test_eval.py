"""``alm eval``: deterministic returns of a saved run, normalised scores, mp4 video, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_OVERRIDES, assert_one_line_error, train_tiny_run

from alm_offline.config import load_config
from alm_offline.runtime.envs import make_env
from alm_offline.runtime.rollout import EVAL_SEED_OFFSET, evaluate
from alm_offline.tools.evaluate import evaluate_checkpoint
from alm_offline.training.checkpoint import checkpoint_path, load_agent, read_checkpoint
from alm_offline.training.loggers import read_jsonl
from alm_offline.training.rundir import prepare_new
from cli import alm

# every test here uses the module's trained run
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "run"
    return train_tiny_run(path, "eval.ref_min=0", "eval.ref_max=1000")


def invoke(*args: str):
    return CliRunner().invoke(alm, list(args), catch_exceptions=False)


def test_eval_matches_a_direct_rollout_and_normalises(run_dir: Path) -> None:
    result = invoke("eval", str(run_dir), "--episodes", "3", "--seed", "4", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    agent, cfg, _ = load_agent(run_dir)
    expected = evaluate(
        lambda o: agent.act(o, 0.0, deterministic=True), make_env(cfg.env), 3, seed=4
    )
    assert report["returns"] == pytest.approx(expected.tolist())
    assert report["return_mean"] == pytest.approx(expected.mean())
    assert (report["ref_min_score"], report["ref_max_score"]) == (0.0, 1000.0)
    assert report["normalized_score_mean"] == pytest.approx(expected.mean() / 10.0)
    assert report["env"] == "InvertedPendulum-v5" and report["video"] is None


def test_video_has_one_frame_per_step_and_frames_move(run_dir: Path, tmp_path: Path) -> None:
    video = tmp_path / "videos" / "pendulum.mp4"
    result = invoke("eval", str(run_dir), "--episodes", "2", "--video", str(video), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    frames = iio.imread(video)
    agent, cfg, _ = load_agent(run_dir)
    env, steps, done = make_env(cfg.env), 0, False
    obs, _ = env.reset(seed=EVAL_SEED_OFFSET)  # the first evaluation episode at seed 0
    while not done:
        obs, _, terminated, truncated, _ = env.step(agent.act(obs, 0.0, deterministic=True))
        steps, done = steps + 1, terminated or truncated
    assert frames.shape == (steps + 1, 480, 480, 3) == (report["video_frames"], 480, 480, 3)
    assert frames.std() > 1.0
    assert np.abs(frames[-1].astype(int) - frames[0]).mean() > 0.1
    assert sorted(p.name for p in video.parent.iterdir()) == ["pendulum.mp4"]  # no temp left


def test_evaluate_checkpoint_file(run_dir: Path) -> None:
    report = evaluate_checkpoint(run_dir / "checkpoints" / "latest.pt", episodes=1)
    assert report.episodes == 1 and len(report.returns) == 1
    low, high = report.ref_min_score, report.ref_max_score  # the run's eval.ref_min/max
    assert (low, high) == (0.0, 1000.0)
    assert report.normalized_score_mean == pytest.approx(100 * report.return_mean / 1000)


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda run, tmp: [str(tmp / "empty")], "has no checkpoint"),
        (lambda run, tmp: [str(tmp / "missing")], "no checkpoint at"),
        (lambda run, tmp: [str(run), "--env", "HalfCheetah-v5"], "obs/action dims"),
        (lambda run, tmp: [str(run), "--video", str(tmp / "dir.mp4")], "is a directory"),
        (lambda run, tmp: [str(run), "--video", str(tmp / "file" / "v.mp4")], "Not a directory"),
        (lambda run, tmp: [str(run), "--video", str(tmp / "v.gif")], ".mp4"),
        (lambda run, tmp: [str(run), "--episodes", "0"], "at least 1"),
    ],
)
def test_bad_input_is_one_line(run_dir: Path, tmp_path: Path, make_args, message: str) -> None:
    (tmp_path / "empty").mkdir()
    prepare_new(tmp_path / "empty", load_config(None, TINY_OVERRIDES), overwrite=False)
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "dir.mp4").mkdir()
    result = CliRunner().invoke(alm, ["eval", *make_args(run_dir, tmp_path)])
    assert_one_line_error(result, message)


def test_the_best_evaluated_checkpoint_is_kept_and_evaluable(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    best_row = max(rows, key=lambda row: row["return_mean"])  # the first of equals
    assert summary["best_eval_return_mean"] == best_row["return_mean"]
    assert summary["best_eval_at"] == best_row["env_step"]
    assert summary["evaluations"] == [[row["env_step"], row["return_mean"]] for row in rows]
    best = checkpoint_path(run_dir, "best")
    assert summary["best_checkpoint"] == str(best)
    state = read_checkpoint(best)
    assert state["counters"]["env_steps"] == best_row["env_step"]
    assert state["replay"] is None  # for evaluation, not for resuming

    result = invoke("eval", str(run_dir), "--best", "--episodes", "2", "--seed", "1", "--json")
    report = json.loads(result.output)
    assert report["checkpoint"] == str(best)
    agent, cfg, _ = load_agent(best)
    expected = evaluate(
        lambda o: agent.act(o, 0.0, deterministic=True), make_env(cfg.env), 2, seed=1
    )
    assert report["returns"] == pytest.approx(expected.tolist())


def test_sampled_latent_evaluation_is_seeded_and_leaves_the_training_rng_alone(run_dir: Path):
    """eval.latent=sample (the reference's protocol): a = pi(z), z ~ e(.|s) drawn from a
    generator seeded by the evaluation seed, not from torch's global RNG."""
    agent, _, _ = load_agent(run_dir)
    observations = np.random.default_rng(0).normal(size=(6, agent.obs_dim)).astype(np.float32)
    rng_before = torch.get_rng_state()

    def actions(latent: str, seed: int) -> np.ndarray:
        policy = agent.eval_policy(latent, seed)
        return np.stack([policy(obs) for obs in observations])

    sampled, again, other_seed = actions("sample", 3), actions("sample", 3), actions("sample", 4)
    mean = actions("mean", 3)
    assert torch.equal(torch.get_rng_state(), rng_before)
    np.testing.assert_array_equal(sampled, again)
    assert np.abs(sampled - other_seed).max() > 1e-4 and np.abs(sampled - mean).max() > 1e-4
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        z_mean, z_std = agent.wm.encode(torch.as_tensor(observations)[None])  # (S=1, 6, Z)
        noise = torch.stack(
            [torch.randn(1, z_mean.shape[-1], generator=generator)[0] for _ in observations]
        )[None]
        expected = agent.wm.pi(z_mean + z_std * noise)[0].numpy()
    np.testing.assert_allclose(sampled, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean, agent.wm.pi(z_mean)[0].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_eval_latent_flag_and_the_runs_own_setting(run_dir: Path, tmp_path: Path) -> None:
    sampled = json.loads(invoke("eval", str(run_dir), "--latent", "sample", "--json").output)
    assert sampled["latent"] == "sample"
    assert json.loads(invoke("eval", str(run_dir), "--json").output)["latent"] == "mean"
    sample_run = train_tiny_run(tmp_path / "sample-run", "eval.latent=sample")
    report = json.loads(invoke("eval", str(sample_run), "--json").output)
    assert report["latent"] == "sample"  # the run's eval.latent is the default

    def training_rows(path: Path) -> list[dict]:
        rows = read_jsonl(path / "metrics.jsonl")
        timing = {"env_steps_per_sec", "updates_per_sec"}
        return [{k: v for k, v in row.items() if k not in timing} for row in rows]

    # sampling evaluation latents draws nothing from the training RNG: training is unchanged
    assert training_rows(sample_run) == training_rows(run_dir)
    result = invoke("eval", str(run_dir), "--latent", "median")
    assert result.exit_code == 2 and "median" in result.output
