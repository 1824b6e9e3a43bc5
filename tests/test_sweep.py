"""`alm sweep`: bad input found before Ray starts, the grid and its files, resume from the
run dirs, and real local Ray sweeps in subprocesses (cluster runs: test_sweep_cluster.py)."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import sys
import time
from concurrent import futures
from dataclasses import asdict, replace
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error

from alm_offline.tools.sweep import SweepError, SweepSpec, check_address
from alm_offline.tools.sweep.engine import resume_states
from alm_offline.tools.sweep.outputs import results_csv, results_table
from alm_offline.tools.sweep.spec import cell_slugs, check_spec, grid_rows, grid_trials
from alm_offline.tools.sweep.trials import (
    die_with_parent,
    run_trial,
    trial_command,
    trial_rows,
    trial_state,
)
from cli import alm

ray = pytest.importorskip("ray")

ENV = "InvertedPendulum-v5"
REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "datasets/bundled/inverted_pendulum-alm-v0.hdf5"
TINY = (  # a trial of a few seconds: 300 env steps, checkpoints every 100
    "steps=300",
    "agent.warmup_steps=100",
    "eval.every=150",
    "eval.episodes=1",
    "checkpoint_every=100",
    "log_every=50",
    "agent.batch_size=32",
    "agent.hidden_dim=32",
    "agent.model_hidden_dim=32",
)


def sweep(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m cli sweep ARGS`` in a real process (its local Ray ends with it)."""
    return subprocess.run(
        [sys.executable, "-m", "cli", "sweep", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def tree_hashes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (but the lock) -> its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# ------------------------------------------------------------- bad input, before Ray starts
ONLINE = ("--config", "quick", "--envs", ENV)
OFFLINE = ("--datasets", str(BUNDLED))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((*ONLINE[:2], "--envs", "NoSuchEnv-v9", "--seeds", "1"), "NoSuchEnv-v9"),
        ((*ONLINE, "--seeds", "1,x"), "--seeds must be comma-separated integers"),
        ((*ONLINE, "--seeds", "1,1"), "seed listed twice: 1"),
        ((*ONLINE, "--seeds", "-1"), "seed must be in [0, 2^32)"),
        ((*OFFLINE, "--seeds", "-1"), "seed must be in [0, 2^32)"),
        ((*ONLINE, "--seeds", "1", "steps=0"), "steps must be positive"),
        ((*ONLINE, "--seeds", "1", "--cpus-per-trial", "0"), "--cpus-per-trial must be positive"),
        ((*ONLINE, "--seeds", "1,2", "--seeds-per-trial", "0"), "--seeds-per-trial must be an"),
        ((*OFFLINE, "--seeds", "1", "--seeds-per-trial", "-2"), "integer >= 1, got -2"),
        ((*ONLINE, "--seeds", "1", "--seeds-per-trial", "x"), "'x' is not a valid integer"),
        ((*OFFLINE, "--seeds", "1", "--cpus-per-trial", "0"), "--cpus-per-trial must be positive"),
        ((*OFFLINE, "--seeds", "1", "--cpus-per-trial", "-1"), "must be positive, got -1"),
        ((*OFFLINE, "--seeds", "1", "--gpus-per-trial", "-1"), "--gpus-per-trial must be >= 0"),
        ((*ONLINE, "--seeds", "1", "--gpus-per-trial", "99"), "99.0 GPUs"),
        ((*OFFLINE, "--methods", "alm,bc", "--seeds", "1"), "has no d3rlpy"),
        ((*OFFLINE, "--methods", "alm,xyz", "--seeds", "1"), "--methods must be"),
        ((*OFFLINE, "--seeds", "1", "--python", "/no/python"), "'/no/python' is not a file"),
        ((*ONLINE, "--methods", "bc", "--seeds", "1"), "an online sweep trains alm and sac; bc"),
        ((*OFFLINE, "--methods", "sac", "--seeds", "1"), "sac trains online: give --envs"),
        (("--datasets", "/no/such.hdf5", "--seeds", "1"), "/no/such.hdf5"),
        ((*ONLINE, "--seeds", "1", "--address", "127.0.0.1:1"), "127.0.0.1:1"),
        ((*ONLINE, "--seeds", "1", "--address", "nohost"), "host:port or auto"),
        (("--envs", ENV, "--seeds", "1"), "an online sweep needs --config"),
        ((*ONLINE,), "give --seeds"),
    ],
)
def test_bad_input_is_one_line_and_starts_no_ray(tmp_path, args, fragment):
    out = tmp_path / "sw"
    start = time.perf_counter()
    result = CliRunner().invoke(alm, ["sweep", "--out", str(out), *args])
    assert time.perf_counter() - start < 10  # a dead address fails fast, not after Ray's retries
    assert_one_line_error(result, fragment)
    assert not ray.is_initialized()
    assert not out.exists()


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("seeds_per_trial", 0, "an integer >= 1 or null"),
        ("seeds_per_trial", "2", "an integer >= 1 or null"),
        ("seeds", [1, "x"], "a non-empty list of integers"),
        ("cpus_per_trial", -1, "a positive number"),
        ("mode", "sideways", "online or offline"),
        ("cells", [], "a non-empty list of strings"),
    ],
)
def test_a_bad_sweep_json_field_is_named_with_its_file(tmp_path, field, value, what):
    record = {"mode": "online", "name": "x", "config": "quick", "cells": [ENV],
              "methods": ["alm"], "seeds": [1], "overrides": [], "python": sys.executable,
              "trials": [], field: value}  # fmt: skip
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    before = (tmp_path / "sweep.json").read_bytes()
    result = CliRunner().invoke(alm, ["sweep", "--resume", str(tmp_path)])
    path = tmp_path.absolute() / "sweep.json"
    assert_one_line_error(result, f"'{path}': field '{field}' must be {what}, got {value!r}")
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.json"]
    assert (tmp_path / "sweep.json").read_bytes() == before


def test_an_existing_sweep_needs_resume_or_overwrite(tmp_path):
    (tmp_path / "sweep.json").write_text("{}")
    result = CliRunner().invoke(alm, ["sweep", *ONLINE, "--seeds", "1", "--out", str(tmp_path)])
    assert_one_line_error(
        result, "already holds a sweep; use --resume to continue it or --overwrite"
    )
    assert not ray.is_initialized()
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.json"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--resume", "{out}"), "holds no sweep (no sweep.json) to resume"),
        (("--resume", "{out}", "--envs", ENV), "--resume takes the grid from OUT/sweep.json"),
        (("--resume", "{out}", "steps=9"), "only --address, --python"),
        (("--resume", "{out}", "--seeds-per-trial", "0"), "only --address, --python"),
    ],
)
def test_bad_resume_is_one_line(tmp_path, args, fragment):
    result = CliRunner().invoke(alm, ["sweep", *(a.format(out=tmp_path) for a in args)])
    assert_one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []


def test_datasets_with_one_file_name_get_their_own_run_dirs(tmp_path):
    cells = ["a/ip.hdf5", "b/ip.hdf5", "alm-suite/hopper/medium-v0", "c/other.hdf5"]
    assert cell_slugs("offline", cells) == [
        "a_ip.hdf5", "b_ip.hdf5", "alm-suite_hopper_medium-v0", "other.hdf5"
    ]  # fmt: skip
    assert cell_slugs("offline", ["x/a/ip.hdf5", "y/a/ip.hdf5"]) == ["x_a_ip.hdf5", "y_a_ip.hdf5"]
    spec = SweepSpec("offline", "s", None, cells[:2], ["alm", "td3+bc"], [1, 2], [], "python")
    run_dirs = [t["run_dir"] for t in grid_rows(grid_trials(spec, tmp_path))]
    assert len(set(run_dirs)) == 8
    assert run_dirs[:3] == [str(tmp_path / "a_ip.hdf5/alm/s1"), str(tmp_path / "a_ip.hdf5/alm/s2"),
                            str(tmp_path / "a_ip.hdf5/td3bc/s1")]  # fmt: skip
    online = SweepSpec("online", "s", "quick", [ENV], ["alm"], [3], [], "python")
    assert grid_trials(online, tmp_path) == [
        {"env": ENV, "method": "alm", "seeds": [3], "run_dir": str(tmp_path / ENV / "s3")}
    ]


def test_a_trial_s_state_comes_from_its_run_dir(tmp_path):
    run = tmp_path / "run"
    assert trial_state(run) == "fresh"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("x")
    assert trial_state(run) == "fresh"  # killed before its first checkpoint
    (run / "checkpoints" / "best.d3").write_bytes(b"x")
    assert trial_state(run) == "fresh"  # a d3rlpy run mid-way cannot resume: run again
    (run / "checkpoints" / "latest.pt").write_bytes(b"x")
    assert trial_state(run) == "resumable"
    (run / "summary.json").write_text("{}")
    assert trial_state(run) == "finished"


def test_the_library_entries_take_a_mistake_as_one_error_line(tmp_path):
    """The subprocesses the library starts (a trial, a grid's sweep) are its own entries,
    with alm's one-line errors and exit status 2."""
    entries = [
        ("alm_offline.training", "offline", "dataset=no-such.hdf5", "--quiet", "seed=1"),
        ("alm_offline.tools.sweep", "--resume", str(tmp_path / "none")),
        ("alm_offline.tools.sweep", "--spec", "{not json", "--out", str(tmp_path / "o")),
    ]
    for module, *args in entries:
        done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                              text=True, cwd=tmp_path, timeout=120)  # fmt: skip
        lines = done.stderr.strip().splitlines()
        assert (done.returncode, len(lines)) == (2, 1), (module, done.stderr)
        assert lines[0].startswith("error: ")
    assert list(tmp_path.iterdir()) == []


def test_trial_commands():
    trial = {"dataset": "d.hdf5", "method": "td3+bc", "seeds": [2], "run_dir": "/o/d/s2"}
    common = dict(python="py", config=None, overrides=["steps=5"], threads=1)
    assert trial_command(trial, mode="offline", state="fresh", overwrite=True, **common) == [
        "py", "-m", "alm_offline.training", "offline", "dataset=d.hdf5", "method=td3+bc",
        "--quiet", "--overwrite", "steps=5", "seed=2", "threads=1", "run_dir=/o/d/s2",
    ]  # fmt: skip
    alm_trial = {**trial, "method": "alm"}
    resume = trial_command(alm_trial, mode="offline", state="resumable", overwrite=True, **common)
    assert resume == ["py", "-m", "alm_offline.training", "offline", "--resume", "/o/d/s2",
                      "--quiet"]  # fmt: skip
    online = {"env": ENV, "method": "alm", "seeds": [1], "run_dir": "/o/e/s1"}
    command = trial_command(online, mode="online", state="fresh", overwrite=False, **common)
    assert command[3:6] == ["online", f"env={ENV}", "--quiet"] and "--overwrite" not in command


COMMON = dict(python="py", config=None, overrides=["steps=5"], threads=1)


def _commands(spec: SweepSpec, out: Path) -> list[list[str]]:
    """The fresh command line of each trial, from ``-m cli CMD`` on."""
    return [
        trial_command(t, mode=spec.mode, state="fresh", overwrite=False, **COMMON)[3:]
        for t in grid_trials(spec, out)
    ]


def test_the_seeds_of_an_alm_cell_are_one_trial_by_default(tmp_path):
    """alm: one trial of seeds=1,2,3 in OUT/CELL/alm (its seeds in OUT/CELL/alm/sSEED, the
    paths of one-seed trials); bc beside it: one trial per seed."""
    spec = SweepSpec("offline", "s", None, ["d.hdf5"], ["alm", "bc"], [1, 2, 3], [], "py")
    trials = grid_trials(spec, tmp_path)
    alm_dir = str(tmp_path / "d.hdf5" / "alm")
    assert [(t["method"], t["seeds"], t["run_dir"]) for t in trials] == [
        ("alm", [1, 2, 3], alm_dir),
        *[("bc", [s], str(tmp_path / f"d.hdf5/bc/s{s}")) for s in (1, 2, 3)],
    ]
    commands = _commands(spec, tmp_path)
    assert commands[0] == [
        "offline", "dataset=d.hdf5", "method=alm", "--quiet", "steps=5",
        "seeds=1,2,3", "threads=1", f"run_dir={alm_dir}",
    ]  # fmt: skip
    assert commands[1][-3] == "seed=1" and not any(c.startswith("seeds=") for c in commands[1])
    rows = grid_rows(trials)
    assert [(r["method"], r["seed"], r["run_dir"], r["trial_dir"]) for r in rows[:4]] == [
        *[("alm", s, f"{alm_dir}/s{s}", alm_dir) for s in (1, 2, 3)],
        ("bc", 1, str(tmp_path / "d.hdf5/bc/s1"), str(tmp_path / "d.hdf5/bc/s1")),
    ]
    assert {r["status"] for r in rows} == {"pending"}
    online = SweepSpec("online", "s", "quick", [ENV], ["alm"], [4, 5], [], "py")
    assert grid_trials(online, tmp_path)[0]["run_dir"] == str(tmp_path / ENV)
    assert _commands(online, tmp_path)[0][-3] == "seeds=4,5"


def test_seeds_per_trial_two_splits_five_seeds_into_chunks(tmp_path):
    spec = SweepSpec("online", "s", "quick", [ENV], ["alm"], [1, 2, 3, 4, 5], [], "py",
                     seeds_per_trial=2)  # fmt: skip
    trials = grid_trials(spec, tmp_path)
    assert [(t["seeds"], Path(t["run_dir"]).relative_to(tmp_path)) for t in trials] == [
        ([1, 2], Path(ENV, "seeds-1-2")), ([3, 4], Path(ENV, "seeds-3-4")), ([5], Path(ENV, "s5"))
    ]  # fmt: skip
    commands = _commands(spec, tmp_path)
    assert [c[-3:] for c in commands] == [
        ["seeds=1,2", "threads=1", f"run_dir={tmp_path / ENV / 'seeds-1-2'}"],
        ["seeds=3,4", "threads=1", f"run_dir={tmp_path / ENV / 'seeds-3-4'}"],
        ["seed=5", "threads=1", f"run_dir={tmp_path / ENV / 's5'}"],
    ]
    assert [Path(r["run_dir"]).relative_to(tmp_path / ENV) for r in grid_rows(trials)] == [
        Path("seeds-1-2/s1"), Path("seeds-1-2/s2"), Path("seeds-3-4/s3"),
        Path("seeds-3-4/s4"), Path("s5"),
    ]  # fmt: skip
    whole = replace(spec, seeds_per_trial=5)  # K >= the seeds: the cell's folder, as default
    assert [t["run_dir"] for t in grid_trials(whole, tmp_path)] == [str(tmp_path / ENV)]


def test_seeds_per_trial_one_is_the_one_seed_layout_and_baselines_never_batch(tmp_path):
    spec = SweepSpec("offline", "s", None, ["d.hdf5"], ["alm", "iql"], [7, 8], [], "py",
                     seeds_per_trial=1)  # fmt: skip
    trials = grid_trials(spec, tmp_path)
    assert [(t["method"], t["seeds"], Path(t["run_dir"]).name) for t in trials] == [
        ("alm", [7], "s7"), ("alm", [8], "s8"), ("iql", [7], "s7"), ("iql", [8], "s8")
    ]  # fmt: skip
    assert [c[-3] for c in _commands(spec, tmp_path)] == ["seed=7", "seed=8"] * 2
    for per_trial in (None, 2):  # ignored for baselines, whatever it is
        only_bc = replace(spec, methods=["bc"], seeds_per_trial=per_trial)
        assert [t["seeds"] for t in grid_trials(only_bc, tmp_path)] == [[7], [8]]
    assert [r["run_dir"] for r in grid_rows(trials)] == [t["run_dir"] for t in trials]


def test_seeds_per_trial_is_checked_first():
    spec = SweepSpec("online", "s", "quick", [ENV], ["alm"], [1, 2], [], "py")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(SweepError, match="--seeds-per-trial must be an integer >= 1"):
            check_spec(replace(spec, seeds_per_trial=bad))


def test_a_record_from_before_batching_resumes_one_seed_per_trial():
    spec = SweepSpec("online", "s", "quick", [ENV], ["alm"], [1, 2], [], "py")
    old = {k: v for k, v in asdict(spec).items() if k != "seeds_per_trial"}
    assert SweepSpec.from_record(old).seeds_per_trial == 1
    assert SweepSpec.from_record(asdict(spec)).seeds_per_trial is None


def _batch(tmp_path: Path, seeds: list[int]) -> dict:
    return {"env": ENV, "method": "alm", "seeds": seeds, "run_dir": str(tmp_path / "b")}


def _write_summary(run_dir: Path, **summary) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_a_batched_trial_s_state_and_resume_command(tmp_path):
    """Resumable only when the batch's config.yaml and every seed's checkpoint exist;
    finished once the batch's summary.json (written after all its seeds) exists."""
    trial = _batch(tmp_path, [1, 2])
    run = Path(trial["run_dir"])
    state = lambda: trial_state(run, trial["seeds"])  # noqa: E731
    assert state() == "fresh"
    (run / "s1" / "checkpoints").mkdir(parents=True)
    (run / "s1" / "checkpoints" / "latest.pt").write_bytes(b"x")
    (run / "config.yaml").write_text("seeds: [1, 2]")
    assert state() == "fresh"  # s2 has not checkpointed: the batch starts again
    (run / "s2" / "checkpoints").mkdir(parents=True)
    (run / "s2" / "checkpoints" / "latest.pt").write_bytes(b"x")
    assert state() == "resumable"
    (run / "config.yaml").unlink()
    assert state() == "fresh"  # --resume DIR needs the batch's config
    _write_summary(run / "s1", eval_return_mean=1.0)
    _write_summary(run / "s2", eval_return_mean=2.0)
    assert state() == "fresh"  # seeds done, the batch's summary not yet written
    _write_summary(run, seeds=[1, 2], runs={"1": str(run / "s1"), "2": str(run / "s2")})
    assert state() == "finished"
    resume = trial_command(trial, mode="online", state="resumable", overwrite=True, **COMMON)
    assert resume == ["py", "-m", "alm_offline.training", "online", "--resume", str(run), "--quiet"]


def test_a_batched_trial_s_rows_come_from_each_seed_s_summary(tmp_path):
    trial = _batch(tmp_path, [1, 2, 3])
    run = Path(trial["run_dir"])
    for seed in (1, 2, 3):
        _write_summary(run / f"s{seed}", eval_return_mean=10.0 * seed, env_steps=300,
                       updates_per_sec=5.0, wall_seconds=2.0)  # fmt: skip
    ok = [sys.executable, "-c", "pass"]  # the training already "ran": its files are here
    rows = run_trial(trial, ok)
    assert [r["status"] for r in rows] == ["failed"] * 3  # no batch summary: not finished
    assert {r["error"] for r in rows} == {"exit status 0"}
    _write_summary(run, seeds=[1, 2, 3], runs={})
    rows = run_trial(trial, ok)
    assert [(r["seed"], r["status"], r["summary"]["eval_return_mean"]) for r in rows] == [
        (1, "ok", 10.0), (2, "ok", 20.0), (3, "ok", 30.0)
    ]  # fmt: skip
    assert [r["run_dir"] for r in rows] == [str(run / f"s{s}") for s in (1, 2, 3)]
    assert {r["trial_dir"] for r in rows} == {str(run)}
    record = {"mode": "online", "name": "b", "cells": [ENV], "methods": ["alm"], "trials": rows}
    assert results_table(record).splitlines()[2] == "| ALM (this run: b) | 20.0 ± 8.2 | 5 | 2 |"
    csv_rows = list(csv.DictReader(results_csv(rows).splitlines()))
    assert [(r["seed"], r["status"], r["eval_return_mean"], r["run_dir"], r["trial_dir"])
            for r in csv_rows] == [
        (str(s), "ok", f"{10.0 * s}", str(run / f"s{s}"), str(run)) for s in (1, 2, 3)
    ]  # fmt: skip

    fail = [sys.executable, "-c", "import sys; sys.exit('error: seed 2 diverged')"]
    rows = run_trial(trial, fail)  # a failed batch fails all its seeds, whatever they wrote
    assert [(r["seed"], r["status"], r["summary"]) for r in rows] == [
        (1, "failed", None), (2, "failed", None), (3, "failed", None)
    ]  # fmt: skip
    assert {r["error"] for r in rows} == {"error: seed 2 diverged"}
    record["trials"] = rows
    assert results_table(record).splitlines()[2] == "| ALM (this run: b) | failed | – | – |"
    (run / "s2" / "summary.json").unlink()
    rows = run_trial(trial, ok)  # the batch finished but a seed's summary is gone
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert rows[1]["error"] == f"no summary.json in {run / 's2'}"


def test_resume_decides_each_trial_from_its_run_dir(tmp_path):
    """A finished batch: its seeds' rows from their summaries; a batch with every seed's
    checkpoint: resumed; one without: run again; one-seed trials as before."""
    spec = SweepSpec("offline", "s", None, ["d.hdf5"], ["alm", "bc"], [1, 2, 3, 4], [], "py",
                     seeds_per_trial=2)  # fmt: skip
    trials = grid_trials(spec, tmp_path)
    done, part, bc1, bc2 = (Path(t["run_dir"]) for t in trials[:4])
    assert (done.name, part.name, bc1.name) == ("seeds-1-2", "seeds-3-4", "s1")
    for seed in (1, 2):
        _write_summary(done / f"s{seed}", eval_return_mean=float(seed))
    _write_summary(done, seeds=[1, 2], runs={})
    (part / "config.yaml").parent.mkdir(parents=True)
    (part / "config.yaml").write_text("x")
    for seed in (3, 4):
        (part / f"s{seed}" / "checkpoints").mkdir(parents=True)
        (part / f"s{seed}" / "checkpoints" / "latest.pt").write_bytes(b"x")
    _write_summary(bc2, eval_return_mean=9.0)
    states, rows = resume_states(trials)
    assert states == {1: "resumable", 2: "fresh", 4: "fresh", 5: "fresh"}
    assert [(r["method"], r["seed"], r["status"]) for r in rows] == [
        ("alm", 1, "ok"), ("alm", 2, "ok"), ("alm", 3, "pending"), ("alm", 4, "pending"),
        ("bc", 1, "pending"), ("bc", 2, "ok"), ("bc", 3, "pending"), ("bc", 4, "pending"),
    ]  # fmt: skip
    assert [r["summary"]["eval_return_mean"] for r in rows if r["status"] == "ok"] == [1, 2, 9]
    assert [r["run_dir"] for r in rows] == [r["run_dir"] for r in grid_rows(trials)]
    commands = [
        trial_command(trials[i], mode="offline", state=state, overwrite=True, **COMMON)[3:]
        for i, state in states.items()
    ]
    assert commands[0] == ["offline", "--resume", str(part), "--quiet"]
    assert commands[1][:4] == ["offline", "dataset=d.hdf5", "method=bc", "--quiet"]
    assert "--overwrite" in commands[1] and "seed=1" in commands[1]
    assert trial_rows(trials[0], "failed", "E")[1]["error"] == "E"


def test_a_resume_never_deletes_a_finished_run(tmp_path):
    """A sweep.json edited to batch seeds that finished as one-seed trials: the batch's dir
    would start afresh (--overwrite) over two finished run dirs; refused in one line,
    before Ray starts, with every file left as it was."""
    spec = SweepSpec("online", "s", "quick", [ENV], ["alm"], [1, 2], [], sys.executable)
    batch = Path(grid_trials(spec, tmp_path)[0]["run_dir"])
    assert batch == tmp_path / ENV  # seeds 1-2 in one process; its seeds in s1, s2
    for seed in (1, 2):  # what a sweep with --seeds-per-trial 1 left behind, finished
        _write_summary(batch / f"s{seed}", eval_return_mean=float(seed))
    record = {**asdict(spec), "status": "done", "trials": grid_rows(grid_trials(spec, tmp_path))}
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = CliRunner().invoke(alm, ["sweep", "--resume", str(tmp_path)])
    assert_one_line_error(result, "a resume never deletes a finished run")
    assert f"'{batch}' would start again over the finished run '{batch / 's1'}'" in result.output
    assert not ray.is_initialized()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_sweep_folder_resumes_by_another_path_to_it(tmp_path):
    """A record written by a sweep whose --out went through one folder (a worktree's
    ``wt/../sweeps``) resumes when given through another: its trials are the same folders.
    Here the resume goes on to the next check, which refuses before Ray starts."""
    for name in ("wt", "other-wt"):
        (tmp_path / name).mkdir()
    spec = SweepSpec("online", "s", "quick", [ENV], ["alm"], [1, 2], [], sys.executable)
    first = tmp_path / "wt" / ".."
    record = {**asdict(spec), "status": "done", "trials": grid_rows(grid_trials(spec, first))}
    assert "/wt/../" in record["trials"][0]["run_dir"]
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    for seed in (1, 2):  # finished one-seed runs where the batch would start afresh
        _write_summary(tmp_path / ENV / f"s{seed}", eval_return_mean=float(seed))
    result = CliRunner().invoke(alm, ["sweep", "--resume", str(tmp_path / "other-wt" / "..")])
    assert_one_line_error(result, "a resume never deletes a finished run")
    assert f"'{tmp_path / ENV}' would start again" in result.output  # the path, normalised
    assert not ray.is_initialized()


def test_a_trial_dies_with_its_worker(tmp_path):
    """The trial's preexec_fn: killing its parent (a Ray worker) SIGKILLs the trial."""
    pid_file = tmp_path / "child.pid"
    parent_code = (
        "import subprocess, sys, time\n"
        "from alm_offline.tools.sweep.trials import die_with_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " preexec_fn=die_with_parent())\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    try:
        deadline = time.monotonic() + 30
        while not pid_file.is_file() or not pid_file.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "Z" not in _proc_state(child):
            assert time.monotonic() < deadline, "the trial outlived its worker"
            time.sleep(0.05)
    finally:
        parent.kill()
    assert die_with_parent() is not None


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_check_address():
    with pytest.raises(SweepError, match=r"no Ray cluster answers at 127\.0\.0\.1:1: "):
        check_address("127.0.0.1:1")
    check_address("auto")  # passed through to Ray
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))  # Ray's ports speak gRPC
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        check_address(f"127.0.0.1:{port}")
        check_address(f"ray://127.0.0.1:{port}")
    finally:
        server.stop(0)
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, says nothing
    with listener, pytest.raises(SweepError, match="does not answer as a Ray cluster"):
        check_address(f"127.0.0.1:{listener.getsockname()[1]}", timeout=1.0)


def _row(cell: str, method: str, seed: int, value: float | None, key: str = "env") -> dict:
    row = {key: cell, "method": method, "seed": seed, "run_dir": f"/r/{cell}/{seed}"}
    if value is None:
        return {**row, "status": "failed", "summary": None, "error": "E: x"}
    summary = {"eval_return_mean": value, "updates_per_sec": 10.0, "wall_seconds": 4.0}
    return {**row, "status": "ok", "summary": summary, "error": None}


def test_one_table_format_online_with_the_paper_row():
    envs = ["HalfCheetah-v5", "Hopper-v5", "Pusher-v5"]
    trials = [
        _row("HalfCheetah-v5", "alm", 1, 100.0),
        _row("HalfCheetah-v5", "alm", 2, 300.0),
        _row("Hopper-v5", "alm", 1, 50.0),
        _row("Hopper-v5", "alm", 2, None),
        _row("Pusher-v5", "alm", 1, None),
    ]
    record = {
        "mode": "online",
        "name": "online",
        "cells": envs,
        "methods": ["alm"],
        "trials": trials,
    }
    paper = {"HalfCheetah-v5": (10789.0, 366.0), "Hopper-v5": (2546.0, 1074.0)}
    assert results_table(record, paper).splitlines() == [
        "| Method | HalfCheetah-v5 | Hopper-v5 | Pusher-v5 | updates/s | wall s per run |",
        "|---|---|---|---|---|---|",
        "| ALM (this run: online) | 200.0 ± 100.0 | 50.0 ± 0.0 (1/2 seeds) | failed | 10 | 4 |",
        "| ALM(3), paper Table 1 (200k steps) | 10789.0 ± 366.0 | 2546.0 ± 1074.0 | – | – | – |",
    ]
    for row in trials:  # an online run's summary has its wall time but no updates/s
        if row["summary"]:
            row["summary"]["updates_per_sec"] = None
    assert results_table(record, paper).splitlines()[2].endswith("| failed | – | 4 |")
    rows = list(csv.DictReader(results_csv(trials).splitlines()))
    assert [(r["env"], r["status"], r["eval_return_mean"]) for r in rows[2:4]] == [
        ("Hopper-v5", "ok", "50.0"), ("Hopper-v5", "failed", "")
    ]  # fmt: skip


def test_one_table_format_offline_normalised_scores(tmp_path):
    """Offline cells: a run's score is the mean of its last three evaluations (eval.jsonl),
    a cell the IQM [95% CI] then mean ± std, and P(alm > td3+bc) per dataset below."""
    cells = ["a/ip.hdf5", "b/ip.hdf5"]
    trials = [_row(c, m, 1, 7.0, key="dataset") for c in cells for m in ("alm", "td3+bc")]
    trials[0]["summary"]["normalized_score_mean"] = 42.0  # no eval.jsonl: the final score
    evals = {("b/ip.hdf5", "alm"): [0.0, 10.0, 20.0, 30.0], ("b/ip.hdf5", "td3+bc"): [9.0] * 3}
    for t in trials:
        if (t["dataset"], t["method"]) in evals:
            run = tmp_path / t["method"]
            run.mkdir()
            rows = [
                {"updates": i, "normalized_score_mean": v}
                for i, v in enumerate(evals[t["dataset"], t["method"]])
            ]
            (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            t["run_dir"] = str(run)
    record = {"mode": "offline", "name": "x", "cells": cells, "methods": ["alm", "td3+bc"],
              "trials": trials}  # fmt: skip
    assert results_table(record, {}).splitlines() == [
        "| Method | a_ip.hdf5 | b_ip.hdf5 | updates/s | wall s per run |",
        "|---|---|---|---|---|",
        "| offline ALM | 42.0 [42.0, 42.0]; 42.0 ± 0.0 | 20.0 [20.0, 20.0]; 20.0 ± 0.0 | 10 | 4 |",
        "| TD3+BC (d3rlpy) | 7.0 [7.0, 7.0]; 7.0 ± 0.0 | 9.0 [9.0, 9.0]; 9.0 ± 0.0 | 10 | 4 |",
        "",
        "Offline scores: the mean of each run's last 3 evaluations; IQM [95% CI] (rliable, "
        "stratified bootstrap); mean ± std over seeds.",
        "P(alm > td3+bc) [95% CI]: a_ip.hdf5 1.00 [1.00, 1.00]; b_ip.hdf5 1.00 [1.00, 1.00]",
    ]


# ------------------------------------------------------------------- real local Ray sweeps
@pytest.mark.slow
def test_a_failed_trial_is_a_row_and_resume_completes_the_grid(tmp_path):
    """s2's run dir is a file: s2 fails in its worker, s1 finishes. ``--resume`` keeps s1
    byte for byte and runs s2 once the file is gone."""
    out = tmp_path / "sw"
    (out / ENV).mkdir(parents=True)
    (out / ENV / "s2").write_text("not a run dir")
    args = (*ONLINE, "--seeds", "1,2", "--seeds-per-trial", "1", "--out", str(out), "--name",
            "tiny", *TINY)  # fmt: skip
    result = sweep(tmp_path, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 of 2 trials failed" in result.stderr
    ok, failed = read_csv(out / "results.csv")
    summary = json.loads((out / ENV / "s1" / "summary.json").read_text())
    assert (ok["seed"], ok["status"], float(ok["eval_return_mean"])) == (
        "1", "ok", summary["eval_return_mean"]
    )  # fmt: skip
    assert summary["env_steps"] == 300 and summary["updates"] == 200
    assert (failed["seed"], failed["status"], failed["eval_return_mean"]) == ("2", "failed", "")
    assert "exists and is not a directory" in failed["error"]
    cell = f"{summary['eval_return_mean']:.1f} ± 0.0 (1/2 seeds)"
    assert f"| ALM (this run: tiny) | {cell} |" in (out / "results.md").read_text()
    assert f"{ENV} s2: failed: error: run dir" in result.stdout
    record = json.loads((out / "sweep.json").read_text())
    assert [t["status"] for t in record["trials"]] == ["ok", "failed"]
    assert record["status"] == "finished" and record["overrides"] == list(TINY)

    again = sweep(tmp_path, *args)  # an existing sweep: refused, untouched
    assert again.returncode == 2 and again.stderr.startswith("error: ")
    assert "--resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    before = tree_hashes(out / ENV / "s1")
    (out / ENV / "s2").unlink()
    resumed = sweep(tmp_path, "--resume", str(out))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 of 2 online trials to run (0 resumed)" in resumed.stdout
    assert tree_hashes(out / ENV / "s1") == before
    record2 = json.loads((out / "sweep.json").read_text())
    assert record2["trials"][0] == record["trials"][0]
    assert [t["status"] for t in record2["trials"]] == ["ok", "ok"]
    means = [t["summary"]["eval_return_mean"] for t in record2["trials"]]
    cell = f"{sum(means) / 2:.1f} ± {abs(means[0] - means[1]) / 2:.1f}"
    table = (out / "results.md").read_text()
    assert f"| ALM (this run: tiny) | {cell} |" in table and "paper" not in table
    assert table in resumed.stdout and (out / "curves.png").stat().st_size > 1000
    assert [r["status"] for r in read_csv(out / "results.csv")] == ["ok", "ok"]


@pytest.mark.slow
def test_an_offline_sweep_of_two_files_with_one_name(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(BUNDLED, tmp_path / folder / "ip.hdf5")
    out = tmp_path / "sw"
    result = sweep(
        tmp_path, "--datasets", "a/ip.hdf5,b/ip.hdf5", "--seeds", "1", "--out", str(out),
        "--config", "offline", "steps=30", "eval.every=30", "eval.episodes=1", "log_every=10",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((out / "sweep.json").read_text())
    assert [(t["dataset"], t["status"]) for t in record["trials"]] == [
        ("a/ip.hdf5", "ok"), ("b/ip.hdf5", "ok")
    ]  # fmt: skip
    for folder in ("a", "b"):
        summary = json.loads((out / f"{folder}_ip.hdf5/alm/s1/summary.json").read_text())
        assert summary["updates"] == 30 and summary["dataset"].endswith(f"{folder}/ip.hdf5")
    table = (out / "results.md").read_text().splitlines()
    assert table[0] == "| Method | a_ip.hdf5 | b_ip.hdf5 | updates/s | wall s per run |"
    assert table[2].startswith("| offline ALM | ")
    rows = read_csv(out / "results.csv")
    assert [(r["dataset"], r["env"], r["status"]) for r in rows] == [
        ("a/ip.hdf5", ENV, "ok"), ("b/ip.hdf5", ENV, "ok")
    ]  # fmt: skip


@pytest.mark.slow
def test_e2e_batched_seeds_sweep_needs_batched_training(tmp_path):
    """Needs ``train-online seeds=...`` (batched training): 3 seeds in chunks of 2 are a
    batch (``OUT/ENV/seeds-1-2``) and a one-seed trial (``OUT/ENV/s3``); each seed has its
    own row from its own summary.json; ``--resume`` of the finished sweep runs nothing."""
    out = tmp_path / "sw"
    args = (*ONLINE, "--seeds", "1,2,3", "--seeds-per-trial", "2", "--out", str(out),
            "--name", "batched", *TINY)  # fmt: skip
    result = sweep(tmp_path, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 of 2 online trials to run (0 resumed)" in result.stdout
    batch = out / ENV / "seeds-1-2"
    assert json.loads((batch / "summary.json").read_text())["seeds"] == [1, 2]
    seed_dirs = [batch / "s1", batch / "s2", out / ENV / "s3"]
    summaries = [json.loads((d / "summary.json").read_text()) for d in seed_dirs]
    assert [s["env_steps"] for s in summaries] == [300, 300, 300]
    rows = read_csv(out / "results.csv")
    assert [(r["seed"], r["status"], r["run_dir"], r["trial_dir"]) for r in rows] == [
        ("1", "ok", str(seed_dirs[0]), str(batch)), ("2", "ok", str(seed_dirs[1]), str(batch)),
        ("3", "ok", str(seed_dirs[2]), str(seed_dirs[2])),
    ]  # fmt: skip
    assert [float(r["eval_return_mean"]) for r in rows] == [
        s["eval_return_mean"] for s in summaries
    ]
    assert "| ALM (this run: batched) |" in (out / "results.md").read_text()
    record = json.loads((out / "sweep.json").read_text())
    kept = {d: tree_hashes(d) for d in (batch, seed_dirs[2])}
    resumed = sweep(tmp_path, "--resume", str(out))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "0 of 2 online trials to run (0 resumed)" in resumed.stdout
    assert {d: tree_hashes(d) for d in kept} == kept
    assert json.loads((out / "sweep.json").read_text())["trials"] == record["trials"]


@pytest.mark.slow
def test_without_ray_one_line_error(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None; import cli; "
        f"sys.argv = ['alm', 'sweep', '--config', 'quick', '--envs', '{ENV}', '--seeds', '1',"
        f" '--out', {str(tmp_path / 'sw')!r}]; "
        "cli.main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: alm sweep needs Ray: pip install 'alm-offline[ray]'"
    assert not (tmp_path / "sw").exists()


def test_a_trial_too_big_for_memory_is_refused_before_ray_starts(tmp_path):
    """Issue 48 item 6: the trial's memory estimate is checked in the driver."""
    out = tmp_path / "out"
    args = ["sweep", "--envs", "InvertedPendulum-v5", "--seeds", "1-2", "--config", "quick"]
    result = CliRunner().invoke(
        cli_group(), [*args, "--out", str(out), "agent.buffer_size=3000000000"]
    )
    assert_one_line_error(result, "a trial of 2 seed(s) needs about")
    assert not out.exists()


def test_an_out_that_cannot_be_written_is_refused_before_ray_starts(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    args = ["sweep", "--envs", "InvertedPendulum-v5", "--seeds", "1", "--config", "quick"]
    result = CliRunner().invoke(cli_group(), [*args, "--out", str(blocker / "out")])
    assert_one_line_error(result, f"cannot write '{blocker / 'out' / 'sweep.json'}'")


def cli_group():
    from cli import alm

    return alm
