"""A batched run's seed dirs cannot drift apart (issue 41): a seed dir alone does not
resume, a batch's checkpoint is one unit across its seeds, and seed dirs that are not one
batch's save are refused naming the seed."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from click.testing import CliRunner
from conftest import TINY_OVERRIDES, assert_one_line_error, train_tiny_run

from alm_offline.training.checkpoint import COMMIT, checkpoint_path, pending_path
from cli import alm

BATCH = ("seeds=1,2", "steps=200", "checkpoint_every=100")
TINY_ARGS = (*TINY_OVERRIDES, "steps=200")


def run_cli(*args: object):
    return CliRunner().invoke(alm, [str(a) for a in args])


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def step_of(path: Path) -> int:
    return torch.load(path, weights_only=True)["counters"]["env_steps"]


def test_a_seed_dir_of_a_batch_does_not_resume_alone(tmp_path):
    run = train_tiny_run(tmp_path / "run", *BATCH)
    before = files_of(run)
    result = run_cli("train-online", "--resume", run / "s2", "--quiet", "steps=300")
    assert_one_line_error(result, f"is seed 2 of the batched run '{run}'")
    assert f"alm train-online --resume {run}" in result.output
    assert files_of(run) == before  # nothing written


def test_a_save_stopped_half_way_resumes_every_seed_from_one_step(tmp_path):
    run = train_tiny_run(tmp_path / "run", *BATCH)  # both seeds' latest.pt at 200
    at_200 = {s: checkpoint_path(run / s).read_bytes() for s in ("s1", "s2")}
    assert run_cli("train-online", "--resume", run, "--quiet", "steps=300").exit_code == 0
    assert not list(run.rglob(".latest.pt.pending")) and not (run / COMMIT).exists()

    # stopped while writing the seeds' checkpoints: s1's written aside, s2's not, no commit
    shutil.copy(checkpoint_path(run / "s1"), pending_path(run / "s1"))
    for seed, saved in at_200.items():
        checkpoint_path(run / seed).write_bytes(saved)
    result = run_cli("train-online", "--resume", run, "--quiet", "steps=300")
    assert result.exit_code == 0, result.output
    assert [step_of(checkpoint_path(run / s)) for s in ("s1", "s2")] == [300, 300]
    assert not pending_path(run / "s1").exists()

    # stopped while committing: s1's renamed, s2's still aside, the commit marker written
    shutil.copy(checkpoint_path(run / "s2"), pending_path(run / "s2"))
    checkpoint_path(run / "s2").write_bytes(at_200["s2"])
    (run / COMMIT).write_text("")
    result = run_cli("train-online", "--resume", run, "--quiet", "steps=300")
    assert result.exit_code == 0, result.output
    assert [step_of(checkpoint_path(run / s)) for s in ("s1", "s2")] == [300, 300]
    assert not (run / COMMIT).exists() and not pending_path(run / "s2").exists()


def test_seed_dirs_that_are_not_one_batchs_save_are_refused_naming_the_seed(tmp_path):
    run = train_tiny_run(tmp_path / "run", *BATCH)
    at_200 = checkpoint_path(run / "s2").read_bytes()
    assert run_cli("train-online", "--resume", run, "--quiet", "steps=300").exit_code == 0
    checkpoint_path(run / "s2").write_bytes(at_200)
    result = run_cli("train-online", "--resume", run, "--quiet", "steps=400")
    assert_one_line_error(result, "seed 2's checkpoint is at 200 env_steps, seed 1's at 300")

    earlier = tmp_path / "earlier"
    run.rename(earlier)
    train_tiny_run(run, *BATCH)  # another batch at the same path, the same config
    shutil.rmtree(run / "s2")
    shutil.copytree(earlier / "s2", run / "s2")
    checkpoint_path(run / "s2").write_bytes(at_200)
    result = run_cli("train-online", "--resume", run, "--quiet", "steps=300")
    assert_one_line_error(result, "seed 2's checkpoint belongs to another batched run")


def test_checkpoints_written_before_issue_41_still_resume(tmp_path):
    """Before issue 41 a seed's checkpoint held views of the stacked replay (its whole
    storage) and no batch identity, and a batch had no batch.json: such a run resumes."""
    run = train_tiny_run(tmp_path / "run", *BATCH)
    (run / "batch.json").unlink()
    for seed in ("s1", "s2"):
        path = checkpoint_path(run / seed)
        state = torch.load(path, weights_only=True)
        state.pop("batch")
        replay = state["replay"]
        for key in ("obs", "action", "reward", "terminated"):  # a view of a larger storage
            rows = replay[key]
            padded = torch.cat([rows, torch.zeros_like(rows)])
            replay[key] = padded[: len(rows)]
        torch.save(state, path)
        assert torch.load(path, weights_only=True)["replay"]["obs"].untyped_storage().nbytes() > (
            replay["obs"].numel() * 4
        )
    result = run_cli("train-online", "--resume", run, "--quiet", "steps=300")
    assert result.exit_code == 0, result.output
    assert [step_of(checkpoint_path(run / s)) for s in ("s1", "s2")] == [300, 300]


def test_a_resume_to_fewer_steps_than_done_is_refused_and_writes_nothing(tmp_path):
    run = train_tiny_run(tmp_path / "run", *BATCH)  # 200 env steps
    before = files_of(run)
    result = run_cli("train-online", "--resume", run, "--quiet", "steps=150")
    assert_one_line_error(result, "steps=150 is below the run's 200 env steps")
    after = {name: data for name, data in files_of(run).items() if name != ".lock"}
    assert after == before  # no checkpoint re-saved, no summary rewritten (the lock's file aside)
    again = run_cli("train-online", "--resume", run, "--quiet", "steps=200")
    assert again.exit_code == 0, again.output  # the run's own step is no error


def test_a_seed_dir_is_never_a_new_run_dir(tmp_path):
    """Issue 48 item 1: run_dir=R/s2 (with or without --overwrite) is refused naming the
    batch, before anything in R/s2 changes."""
    run = train_tiny_run(tmp_path / "run", *BATCH)
    before = files_of(run)
    for extra in ((), ("--overwrite",)):
        result = run_cli("train-online", "--quiet", *extra, *TINY_ARGS, f"run_dir={run / 's2'}")
        assert_one_line_error(result, f"is seed 2 of the batched run '{run.resolve()}'")
    assert files_of(run) == before


def test_a_seed_dir_through_a_link_or_without_the_batch_config_does_not_resume(tmp_path):
    """Issue 48 item 2: through a symlink, or with R/config.yaml unreadable."""
    run = train_tiny_run(tmp_path / "run", *BATCH)
    link = tmp_path / "link"
    link.symlink_to(run / "s2")
    before = files_of(run)
    result = run_cli("train-online", "--resume", link, "--quiet", "steps=300")
    assert_one_line_error(result, "is seed 2 of the batched run")
    (run / "config.yaml").write_bytes(b"\xff not yaml")
    result = run_cli("train-online", "--resume", run / "s2", "--quiet", "steps=300")
    assert_one_line_error(result, "is seed 2 of the batched run")
    after = files_of(run)
    after.pop("config.yaml")
    before.pop("config.yaml")
    assert after == before


def test_a_batch_whose_identity_is_gone_or_unreadable_does_not_resume(tmp_path):
    """Issue 48 item 3: batch.json removed or unreadable switches no check off."""
    run = train_tiny_run(tmp_path / "run", *BATCH)
    identity = (run / "batch.json").read_bytes()
    (run / "batch.json").write_text("{not json")
    result = run_cli("train-online", "--resume", run, "--quiet", "steps=300")
    assert_one_line_error(result, "cannot be read")
    (run / "batch.json").unlink()
    result = run_cli("train-online", "--resume", run, "--quiet", "steps=300")
    assert_one_line_error(result, "batch's identity (batch.json) is gone")
    (run / "batch.json").write_bytes(identity)
    assert run_cli("train-online", "--resume", run, "--quiet", "steps=300").exit_code == 0
