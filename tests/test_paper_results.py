"""The paper's published results on this project's axis, the report read against them, and
benchmarks/paper_results.sh end to end in its CPU mode (fresh, stopped by its deadline, resumed)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from test_plot import write_run

from alm_offline.tools.paper_results import (
    PaperResultsError,
    env_curves,
    result_rows,
    run_progress,
    write_paper_results,
)
from alm_offline.tools.published import PAPER_TABLE1, published_at, published_curve
from alm_offline.training.loggers import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
# the released HalfCheetah curve's first rows (scores/gym_half_cheetah.csv), x = 5000 and 10000
CHEETAH_X5000 = (-105.1, -223.0, -129.8, -287.7, -150.5)
CHEETAH_X15000 = (3005.0, 2451.2, 2943.7, 3337.5, 1895.4)


def test_published_curves_sit_at_x_plus_the_warm_up():
    curve = published_curve("HalfCheetah-v5")
    assert curve.returns.shape == (59, 5) and curve.x[0] == 5000 and curve.x[-1] == 295000
    np.testing.assert_array_equal(curve.env_steps, curve.x + 5000)
    np.testing.assert_allclose(curve.returns[0], CHEETAH_X5000)
    # the figures: -179 / 989 / 2727 / 3755 at x = 5k / 10k / 15k / 20k
    np.testing.assert_allclose(np.round(curve.mean[:4]), [-179, 989, 2727, 3755])
    point = published_at("HalfCheetah-v5", 20000)  # 15k updates after our 5000-step warm-up
    assert (point.x, point.source, point.seeds) == (15000, "curve", 5)
    assert point.mean == pytest.approx(np.mean(CHEETAH_X15000))
    assert point.std == pytest.approx(np.std(CHEETAH_X15000))
    assert point.stderr == pytest.approx(np.std(CHEETAH_X15000, ddof=1) / math.sqrt(5))
    assert published_at("HalfCheetah-v5", 20000, warmup_steps=10000).x == 10000
    assert published_at("HalfCheetah-v5", 12500) is None  # between evaluations
    assert published_curve("Hopper-v5") is None  # no released Hopper curve: Table 1 only
    hopper = published_at("Hopper-v5", 205000)
    assert (hopper.mean, hopper.std, hopper.source) == (2546.0, 1074.0, "table1")
    assert PAPER_TABLE1["HalfCheetah-v5"] == (10789.0, 366.0)
    # the curve wins over Table 1 where both exist (Walker2d's differ: 1954 against 3006)
    assert published_at("Walker2d-v5", 205000).mean == pytest.approx(1954, abs=1)


def test_result_rows_read_seeds_against_the_published_curve(tmp_path):
    runs = {1: {10000: 100.0, 15000: 900.0, 20000: 2000.0}, 2: {10000: 300.0, 15000: 1100.0}}
    for seed, evals in runs.items():
        write_run(tmp_path / "cheetah" / f"s{seed}", "HalfCheetah-v5", seed, evals)
    write_run(tmp_path / "hopper" / "s1", "Hopper-v5", 1, {10000: 50.0})
    envs = env_curves([tmp_path])
    assert list(envs) == ["HalfCheetah-v5", "Hopper-v5"] and envs["HalfCheetah-v5"][1] == 5000
    rows = result_rows("HalfCheetah-v5", *envs["HalfCheetah-v5"])
    assert [(r.env_step, r.updates, r.seeds) for r in rows] == [(10000, 5000, 2), (15000, 10000, 2)]
    first = rows[0]
    assert first.mean == 200.0 and first.std == 100.0 and first.per_seed == (100.0, 300.0)
    assert first.stderr == pytest.approx(np.std([100, 300], ddof=1) / math.sqrt(2))
    assert first.published.mean == pytest.approx(np.mean(CHEETAH_X5000))
    assert first.ratio == pytest.approx(200.0 / np.mean(CHEETAH_X5000))
    assert rows[1].ratio == pytest.approx(1000.0 / 989.1, abs=1e-3)
    hopper = result_rows("Hopper-v5", *envs["Hopper-v5"])
    assert hopper[0].published is None and hopper[0].ratio is None and hopper[0].stderr == 0.0

    out = tmp_path / "out"
    written = write_paper_results(out, [tmp_path], "# header", {"bench": {"rows": []}})
    assert len(written) == 3
    data = json.loads((out / "results.json").read_text())
    assert [row["env_step"] for row in data["rows"]] == [10000, 15000, 10000]
    assert data["rows"][0]["published"]["x"] == 5000 and data["bench"] == {"rows": []}
    table = (out / "results.md").read_text()
    assert (
        table.startswith("# header")
        and "| 15000 | 10000 | 1000 ± 100 | 100 | 900 / 1100 |" in table
    )
    assert "| 989 ± " in table and "| 1.01 |" in table
    assert imread(out / "curves.png").shape == (350, 1000, 4)  # two envs side by side

    write_run(tmp_path / "again" / "s1", "HalfCheetah-v5", 1, {10000: 1.0})
    with pytest.raises(PaperResultsError, match="seed 1 of HalfCheetah-v5 appears twice"):
        env_curves([tmp_path])


def paper_results(out: Path, runs: Path, *args: str, deadline: int = 120):
    command = ["bash", "benchmarks/paper_results.sh", str(out), "--cpu", "--runs", str(runs)]
    command += ["--deadline", str(deadline), "--envs", "HalfCheetah-v5", "--seeds", "1,2", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400)


def evaluated_steps(run: Path, seed: int) -> list[int]:
    return [row["env_step"] for row in read_jsonl(run / f"s{seed}" / "eval.jsonl")]


@pytest.mark.slow
def test_paper_results_runs_stops_at_its_deadline_and_resumes(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    run = runs / "HalfCheetah-v5"
    # a deadline that stops the run mid-way (the script keeps 25 s for the report)
    first = paper_results(out, runs, "--steps", "100000", "--only", "bench,runs", deadline=55)
    assert first.returncode == 0, first.stdout + first.stderr
    log = (out / "log.txt").read_text()
    assert "HalfCheetah-v5: new" in log and "HalfCheetah-v5 exit 124" in log
    assert {p.name for p in out.iterdir()} == {
        "system.json", "log.txt", "seeds.json", "results.json", "results.md", "curves.png"
    }  # fmt: skip
    assert [row["seeds"] for row in json.loads((out / "seeds.json").read_text())["rows"]] == [1, 5]
    assert run_progress(run) == "unfinished 100000"
    stopped = evaluated_steps(run, 1)
    assert stopped and stopped == evaluated_steps(run, 2) and stopped[-1] < 100000

    refused = paper_results(out, runs, "--only", "runs")  # the runs exist: never overwritten
    assert refused.returncode == 2 and refused.stderr.strip().startswith("error: ")
    assert "--resume" in refused.stderr and evaluated_steps(run, 1) == stopped

    # resumed: the stopped run continues from its checkpoint, to --max-steps
    target = stopped[-1] + 200
    resumed = paper_results(out, runs, "--resume", "--max-steps", str(target), "--only", "runs")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "HalfCheetah-v5: unfinished 100000" in (out / "log.txt").read_text()
    assert run_progress(run) == f"finished {target}"
    steps = evaluated_steps(run, 1)
    assert steps[: len(stopped)] == stopped and steps[-1] == target
    assert steps == sorted(set(steps)) == evaluated_steps(run, 2)  # no evaluation twice
    # and a finished run goes on by --steps, up to --max-steps
    extended = paper_results(
        out, runs, "--resume", "--steps", "100", "--max-steps", str(target + 100), "--only", "runs"
    )
    assert extended.returncode == 0, extended.stdout + extended.stderr
    assert f"HalfCheetah-v5: finished {target}" in (out / "log.txt").read_text()
    assert run_progress(run) == f"finished {target + 100}"
    assert evaluated_steps(run, 1) == [*steps, target + 100] == evaluated_steps(run, 2)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [row["env_step"] for row in rows] == [*steps, target + 100]
    assert all(row["seeds"] == 2 and len(row["per_seed"]) == 2 for row in rows)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "OUT_DIR is required"),
        (["{out}", "--cpu", "--deadline"], "--deadline needs a value"),
        (["{out}", "--cpu", "--deadline", "-5"], "--deadline must be a positive integer"),
        (["{out}", "--cpu", "--seeds", "a"], "--seeds must be comma-separated integers"),
        (["{out}", "--cpu", "--seeds", "1,1"], "--seeds must be distinct"),
        (["{out}", "--cpu", "--steps", "0"], "--steps must be a positive integer"),
        (["{out}", "--cpu", "--only", "tests,nosuch"], "--only takes tests, bench, runs"),
        (["{out}", "--cpu", "--envs", "NoSuchEnv-v0"], "gymnasium knows no env 'NoSuchEnv-v0'"),
        (["--cpu", "{out}"], "OUT_DIR comes first and is not an option, got '--cpu'"),
        (["{out}", "--cpu", "--nosuch"], "unknown option '--nosuch'"),
    ],
)
def test_paper_results_checks_every_flag_before_writing(tmp_path, args, fragment):
    out = tmp_path / "out"
    before = sorted(p.name for p in ROOT.iterdir())
    command = ["bash", str(ROOT / "benchmarks/paper_results.sh")]
    done = subprocess.run(
        command + [a.format(out=out) for a in args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # no OUT, nothing in the current folder
    assert sorted(p.name for p in ROOT.iterdir()) == before  # no paper-runs/, no log


def test_a_failed_step_still_reports_then_exits_non_zero_naming_it(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "HalfCheetah-v5").write_text("not a run dir")  # the run cannot start
    done = paper_results(tmp_path / "out", runs, "--resume", "--only", "runs", deadline=60)
    assert done.returncode == 1
    lines = done.stdout.strip().splitlines()
    assert "report exit 0" in lines[-2]
    assert lines[-1].split("] ", 1)[1].startswith("failed: runs (HalfCheetah-v5)")
    assert (tmp_path / "out" / "results.md").is_file()


def _files_under(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("args", "cwd", "fragment"),
    [
        (["{tmp}/out", "--runs", "{tmp}/runs"], ROOT, "no CUDA GPU here"),
        (["/", "--cpu", "--runs", "{tmp}/runs"], ROOT, "OUT_DIR must not be /"),
        (["{tmp}/out", "--cpu", "--runs", "/"], ROOT, "--runs must not be /"),
        (
            ["results/halfcheetah-sac", "--cpu", "--runs", "{tmp}/r"],
            ROOT,
            "is inside the repository",
        ),
        (["{tmp}/out", "--cpu", "--runs", "paper-runs"], ROOT, "is inside the repository"),
        (["{tmp}/out", "--cpu", "--runs", "{root}/docs/../x"], ROOT, "is inside the repository"),
        (["x", "--cpu", "--runs", "{tmp}/r"], ROOT / "docs", "is inside the repository"),
        (["out", "--cpu", "--runs", "old-runs"], "{tmp}", "{tmp}/old-runs' exists: pass --resume"),
        (["{tmp}/out", "--cpu", "--deadline", "9" * 23], ROOT, "--deadline must be a positive"),
    ],
)
def test_paper_results_refuses_before_writing_anything(tmp_path, args, cwd, fragment):
    """No GPU without --cpu, /, a folder inside the repository (the tracked results/ above
    all), relative paths from the caller's folder, a huge --deadline: one error line, exit
    2, nothing written anywhere."""
    (tmp_path / "old-runs").mkdir()
    fill = lambda text: str(text).format(tmp=tmp_path, root=ROOT)  # noqa: E731
    before = _files_under(ROOT / "results"), sorted(p.name for p in tmp_path.iterdir())
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks/paper_results.sh"), *map(fill, args)],
        cwd=fill(cwd), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: ") and fill(fragment) in done.stderr, done.stderr
    assert (_files_under(ROOT / "results"), sorted(p.name for p in tmp_path.iterdir())) == before
    assert not (ROOT / "paper-runs").exists() and not (ROOT / "docs" / "x").exists()
