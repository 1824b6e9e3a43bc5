"""``alm grid``: a results grid that lands cell by cell, on the shared D4RL-recipe files,
and the interval estimates its tables print (rliable) against hand-computed values."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_cli

from alm_offline.tools.grid_file import load_grid
from alm_offline.tools.grid_report import provenance, replace_section
from alm_offline.tools.grid_run import exited, sweep_command, sweep_failures
from alm_offline.tools.stats import (
    final_score,
    mean_interval,
    probability_of_improvement,
    summarise_seeds,
)
from alm_offline.tools.sweep.outputs import describe
from alm_offline.training.loggers import read_jsonl

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "halfcheetah-sac"
TINY = [
    "steps=20",
    "checkpoint_every=10",
    "log_every=10",
    "eval.every=10",
    "eval.episodes=1",
    "agent.batch_size=16",
]


def baselines_python() -> str:
    return os.environ.get("ALM_BASELINES_PYTHON") or str(REPO / ".venv-baselines/bin/python")


def write_grid(folder: Path, cells: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    grid = {
        "name": "tiny",
        "env": "HalfCheetah-v5",
        "data": str(DATA),
        "datasets": {"medium-replay": "halfcheetah-sac-medium-replay.hdf5"},
        "config": "offline-halfcheetah-sac",
        "seeds": [1, 2],
        "overrides": TINY,
        "compare": ["alm", "bc"],
        "cells": cells,
    }
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


# --------------------------------------------------------------------------- the statistics
def test_scores_and_intervals_against_hand_computed_values():
    assert final_score([0.0, 10.0, 20.0, 30.0]) == 20.0  # the last three
    assert final_score([4.0, 6.0]) == 5.0
    cell = summarise_seeds([1.0, 2.0, 3.0, 4.0, 10.0])
    assert (cell.mean, cell.iqm.value) == (4.0, 3.0)  # IQM: the middle three of five
    assert cell.std == pytest.approx(np.sqrt(10.0))
    assert cell.iqm.low <= 3.0 <= cell.iqm.high < 10.0
    # x beats 4 of y's 5 runs, each of 5 times: 20 of 25 pairs
    better = probability_of_improvement([5, 6, 7, 8, 9], [1, 2, 3, 4, 10])
    assert better.value == pytest.approx(0.8)
    assert better.low < 0.8 < better.high <= 1.0
    assert probability_of_improvement([1, 2], [1, 2]).value == pytest.approx(0.5)  # ties: half
    mean, low, high = mean_interval(np.array([[1.0, 2.0], [3.0, 6.0]]))
    assert mean.tolist() == [2.0, 4.0]
    assert low.tolist() == [1.0, 2.0] and high.tolist() == [3.0, 6.0]


def test_the_same_scores_give_the_same_intervals_whatever_ran_before():
    """rliable's bootstrap draws from numpy's global RNG whatever random_state it is given:
    a report with one more cell gave another cell another interval (medium-expert's ALM
    [8.1, 37.1], then [12.7, 37.1]). Each interval is now its own seeded draw."""
    scores = [38.4, 31.7, 34.4, 17.3, 3.5]
    first = summarise_seeds(scores).iqm
    np.random.seed(123)
    np.random.random(7)  # anything else drawing from the global RNG between two reports
    assert summarise_seeds(scores).iqm == first
    pair = probability_of_improvement(scores, [35.1, 35.1, 38.4, 35.2, 31.4])
    summarise_seeds([1.0, 2.0, 3.0])
    assert probability_of_improvement(scores, [35.1, 35.1, 38.4, 35.2, 31.4]) == pair
    state = np.random.get_state()[1].copy()
    mean_interval(np.array([[1.0, 2.0], [3.0, 6.0], [2.0, 2.0]]))
    assert np.array_equal(np.random.get_state()[1], state)  # the caller's RNG is left alone


def test_a_finished_trials_line_gives_the_protocols_score(tmp_path):
    """The line a sweep prints as an offline trial ends named the final evaluation "score"
    (medium--alm seed 4: "score 33.5") where the cell file's score, the protocol's, is the
    mean of the last three evaluations (35.6)."""
    evals = [24.8, 36.6, 36.6, 33.5]
    rows = [{"updates": 5000 * (i + 1), "normalized_score_mean": v} for i, v in enumerate(evals)]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"normalized_score_mean": 33.5, "updates": 20000, "wall_seconds": 12.0}
    row = {"dataset": "d.hdf5", "method": "alm", "seed": 4, "status": "ok", "summary": summary}
    row["run_dir"] = str(tmp_path)
    assert (
        describe(row, "[1/2]", "offline")
        == "[1/2] d.hdf5 alm s4: ok, score 35.6 (20000 updates, 12 s)"
    )
    online = {"env": "Pendulum-v1", "seed": 1, "status": "ok", "run_dir": str(tmp_path)}
    online["summary"] = {"eval_return_mean": -150.0, "env_steps": 1000, "wall_seconds": 3.0}
    assert (
        describe(online, "", "online")
        == "Pendulum-v1 s1: ok, eval return -150.0 (1000 env steps, 3 s)"
    )


# ------------------------------------------------------------------------------ the grid
def test_grid_files_are_checked_before_anything_runs(tmp_path):
    good = [{"dataset": "medium-replay", "method": "alm"}]
    path = write_grid(tmp_path, good)
    grid = load_grid(path)
    assert [c.slug for c in grid.cells] == ["medium-replay--alm"]
    out = tmp_path / "sweep"
    fresh = sweep_command(grid, grid.cells[0], out, None)
    assert fresh[1:3] == ["-m", "alm_offline.tools.sweep"] and fresh[3] == "--spec"
    spec = json.loads(fresh[4])
    assert (spec["cells"], spec["methods"], spec["mode"]) == ([str(grid.file("medium-replay"))],
                                                              ["alm"], "offline")  # fmt: skip
    (out).mkdir()
    (out / "sweep.json").write_text("{}")  # an interrupted cell continues its sweep
    assert sweep_command(grid, grid.cells[0], out, None)[3:5] == ["--resume", str(out)]
    on_cluster = sweep_command(grid, grid.cells[0], out, None, "auto")  # a shared Ray cluster
    assert on_cluster[3:7] == ["--address", "auto", "--resume", str(out)]


def test_a_resumed_cell_keeps_its_methods_interpreter(tmp_path):
    """A resumed ALM cell's trials run this interpreter, not the baselines' (whose venv has
    another gymnasium): only a baseline cell's resume names the baselines' python."""
    cells = [{"dataset": "medium-replay", "method": "alm"}, {"dataset": "medium-replay",
             "method": "bc"}]  # fmt: skip
    grid = load_grid(write_grid(tmp_path, cells))
    for cell, expected in zip(grid.cells, [sys.executable, "venv/bin/python"], strict=True):
        out = tmp_path / cell.slug
        out.mkdir()
        (out / "sweep.json").write_text("{}")
        resume = sweep_command(grid, cell, out, "venv/bin/python")
        assert resume[resume.index("--python") + 1] == str(Path(expected).absolute())
    bad = write_grid(tmp_path / "bad", [{"dataset": "medium", "method": "alm"}])
    done = run_cli("grid", "run", str(bad), "--work-dir", str(tmp_path / "w"), cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"error: '{bad}': cell 1 must name a dataset among ['medium-replay']"
    ]
    assert not (tmp_path / "w").exists()


def test_a_cell_s_sweep_that_ends_is_seen_when_it_ends():
    """The grid waits on a cell's sweep (landing its seeds meanwhile) rather than sleeping
    a fixed 15 s between looks: a sweep that has ended reads as ended at once."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert exited(child, 0.2) is False
    finally:
        child.kill()
    assert exited(child, 600) is True and child.returncode != 0


def test_only_failed_rows_are_a_cells_failure(tmp_path):
    """A sweep that stopped before its trials ran leaves them pending: that is its exit
    status's story, not "3 failed seed(s): None"."""
    rows = [{"seed": 1, "status": "ok"}, {"seed": 2, "status": "pending"}]
    (tmp_path / "sweep.json").write_text(json.dumps({"trials": rows}))
    assert sweep_failures(tmp_path) is None
    rows.append({"seed": 3, "status": "failed", "error": "ValueError: x"})
    (tmp_path / "sweep.json").write_text(json.dumps({"trials": rows}))
    assert sweep_failures(tmp_path) == "1 failed seed(s): ValueError: x"


def test_provenance_names_every_commit_a_cells_seeds_ran_at(tmp_path):
    grid = load_grid(
        write_grid(
            tmp_path,
            [
                {"dataset": "medium-replay", "method": "bc"},
                {"dataset": "medium-replay", "method": "alm"},
            ],
        )
    )
    a, b = "a" * 40, "b" * 40
    record = {"protocol": "p", "commit": f"{b}, {a}", "cpu": "AMD EPYC", "data_sha256": {}}
    text = provenance(grid, {"medium-replay--bc": record})
    assert f"Measured at commit(s) {a[:12]}, {b[:12]} on AMD EPYC." in text
    assert "Not measured yet: medium-replay--alm." in text


def test_replace_section_rebuilds_only_the_marked_table():
    text = "a\n<!-- grid:g:start -->\nold\n<!-- grid:g:end -->\nb\n"
    assert replace_section(text, "g", "new\n") == (
        "a\n<!-- grid:g:start -->\nnew\n<!-- grid:g:end -->\nb\n"
    )


@pytest.mark.slow
def test_a_grid_lands_cell_by_cell_and_reports_from_its_files(tmp_path):
    cells = [
        {"dataset": "medium-replay", "method": "alm", "label": "offline ALM"},
        {"dataset": "medium-replay", "method": "bc", "label": "BC"},
        {"dataset": "medium-replay", "variant": "alm-kl0", "overrides": ["agent.kl_coef=0"]},
    ]
    path = write_grid(tmp_path / "results", cells)
    work = tmp_path / "work"
    run = [
        "grid", "run", str(path), "--work-dir", str(work), "--python", baselines_python(),
        "--only", "medium-replay--alm,medium-replay--bc", "--cells-at-once", "2",
    ]  # fmt: skip
    done = run_cli(*run, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 cell(s) written" in done.stdout

    sums = dict(line.split()[::-1] for line in (DATA / "SHA256SUMS").read_text().splitlines())
    record = json.loads((tmp_path / "results/cells/medium-replay--alm.json").read_text())
    assert record["data_sha256"] == {"halfcheetah-sac-medium-replay.hdf5": sums[
        "halfcheetah-sac-medium-replay.hdf5"]}  # fmt: skip
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                 if line.startswith("Model name:"))  # fmt: skip
    assert record["cpu"] == model and len(record["commit"].split("+")[0]) == 40
    assert record["config"]["steps"] == 20 and record["config"]["env"] == "HalfCheetah-v5"
    assert sorted(record["seeds"]) == ["1", "2"]
    for seed in record["seeds"].values():
        evals = read_jsonl(Path(seed["run_dir"]) / "eval.jsonl")
        assert [e["updates"] for e in seed["evaluations"]] == [10, 20]
        scores = [e["normalized_score_mean"] for e in evals]
        assert seed["score"] == pytest.approx(np.mean(scores[-3:]))
        assert seed["model_kl"]["min"] <= seed["model_kl"]["last"] <= seed["model_kl"]["max"]
    assert record["command"].startswith(f"alm sweep --datasets {DATA}/halfcheetah-sac-medium")
    assert "--python" not in record["command"] and "steps=20" in record["command"]
    bc = json.loads((tmp_path / "results/cells/medium-replay--bc.json").read_text())
    assert "--methods bc --seeds 1,2 --config offline-halfcheetah-sac" in bc["command"]
    assert [s["model_kl"] for s in bc["seeds"].values()] == [None, None]

    # a rerun skips finished cells: it starts no sweep
    sweeps = sorted(p.name for p in work.iterdir())
    again = run_cli(*run, cwd=tmp_path)
    assert again.returncode == 0 and "0 cell(s) written" in again.stdout
    assert sorted(p.name for p in work.iterdir()) == sweeps

    # each seed landed in a file of its own as it finished; a cell stopped with one seed
    # landed (its sweep folder gone with the machine) trains only the other seed
    seeds = tmp_path / "results/cells/seeds/medium-replay--bc"
    assert sorted(p.name for p in seeds.iterdir()) == ["s1.json", "s2.json"]
    kept = json.loads((seeds / "s1.json").read_text())
    assert kept["record"] == bc["seeds"]["1"] and kept["config"]["seed"] == 1
    (tmp_path / "results/cells/medium-replay--bc.json").unlink()
    (seeds / "s2.json").unlink()
    shutil.rmtree(work / "medium-replay--bc")
    partial = run_cli(*run, cwd=tmp_path)
    assert partial.returncode == 0, partial.stderr[-2000:]
    assert "medium-replay--bc: seeds 2:" in partial.stdout and "1 cell(s) written" in partial.stdout
    sweep = json.loads((work / "medium-replay--bc/sweep.json").read_text())
    assert sweep["seeds"] == [2]
    rebuilt = json.loads((tmp_path / "results/cells/medium-replay--bc.json").read_text())
    assert rebuilt["seeds"]["1"] == bc["seeds"]["1"] and sorted(rebuilt["seeds"]) == ["1", "2"]
    assert rebuilt["seeds"]["2"]["evaluations"] == bc["seeds"]["2"]["evaluations"]

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- grid:tiny:start -->\n<!-- grid:tiny:end -->\nrest\n")
    report = run_cli("grid", "report", str(path), "--readme", str(readme), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    table = (tmp_path / "results/results.md").read_text()
    assert "not measured" in table and "Not measured yet: medium-replay--alm-kl0." in table
    iqm = summarise_seeds([s["score"] for s in record["seeds"].values()]).iqm.describe()
    assert iqm in table
    assert table.split("\n", 2)[2] in readme.read_text()
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("rest\n")
    assert (tmp_path / "results/curves.png").stat().st_size > 0


def test_a_cell_may_name_its_own_config(tmp_path):
    path = write_grid(
        tmp_path,
        [
            {"dataset": "medium-replay", "method": "bc"},
            {"dataset": "medium-replay", "config": "offline-locomotion"},
        ],
    )
    from alm_offline.tools.grid_run import alm_sweep_line, cell_spec

    grid = load_grid(path)
    bc, alm_cell = grid.cells
    assert bc.config is None and alm_cell.config == "offline-locomotion"
    assert cell_spec(grid, bc, None).config == "offline-halfcheetah-sac"
    assert cell_spec(grid, alm_cell, None).config == "offline-locomotion"
    assert " --config offline-locomotion --out " in alm_sweep_line(grid, alm_cell, tmp_path, None)
    from alm_offline.tools.grid_report import provenance

    # the table names the config each cell ran, not the grid's alone
    assert provenance(grid, {}).startswith(
        "Seeds 1, 2; config `offline-halfcheetah-sac` (alm: `offline-locomotion`); "
    )


def test_an_unwritable_results_folder_is_refused_before_a_cell_trains(tmp_path):
    path = write_grid(tmp_path, [{"dataset": "medium-replay", "method": "bc"}])
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the results folder would go")
    work = tmp_path / "w"
    done = run_cli(
        "grid", "run", str(path), "--results", str(blocker / "res"), "--work-dir", str(work),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write")
    assert "res/cells/medium-replay--bc.json" in lines[0]
    assert not work.exists()  # no sweep started


def good_record(grid_path: Path) -> dict:
    """A well-formed record of write_grid's medium-replay--bc cell (seeds 1, 2)."""
    seeds = {
        str(seed): {"evaluations": [{"updates": 20, "score": 5.0 + seed}], "score": 5.0 + seed}
        for seed in (1, 2)
    }
    return {
        "grid": "tiny", "dataset": "medium-replay", "method": "bc", "variant": "bc",
        "data_file": "halfcheetah-sac-medium-replay.hdf5", "config": {"steps": 20},
        "seeds": seeds,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda r: [], "is not a cell record"),
        (lambda r: {}, "its grid is None, not 'tiny'"),
        (lambda r: {**r, "grid": "halfcheetah-sac"}, "its grid is 'halfcheetah-sac'"),
        (lambda r: {**r, "variant": "alm"}, "its variant is 'alm'"),
        (lambda r: {**r, "config": {"steps": 50000}}, "its steps is 50000, not 20"),
        (lambda r: {**r, "seeds": 5}, "holds seeds 5"),
        (lambda r: {**r, "seeds": {"1": r["seeds"]["1"]}}, "holds seeds ['1']"),
        (lambda r: {**r, "seeds": {**r["seeds"], "2": {"score": "x"}}}, "seed 2 has no finite"),
        (lambda r: {**r, "seeds": {**r["seeds"], "2": {**r["seeds"]["2"], "score": float("nan")}}},
         "seed 2 has no finite"),
    ],
)  # fmt: skip
def test_a_cell_file_counts_only_when_it_is_this_grids_and_well_formed(tmp_path, change, fragment):
    from alm_offline.tools.grid_file import GridError
    from alm_offline.tools.grid_records import read_cells

    path = write_grid(tmp_path, [{"dataset": "medium-replay", "method": "bc"}])
    cells = tmp_path / "cells"
    cells.mkdir()
    (cells / "medium-replay--bc.json").write_text(json.dumps(good_record(path)))
    assert list(read_cells(load_grid(path))) == ["medium-replay--bc"]
    (cells / "medium-replay--bc.json").write_text(json.dumps(change(good_record(path))))
    with pytest.raises(GridError, match=re.escape(fragment)):
        read_cells(load_grid(path))


def test_report_checks_the_readme_before_writing_anything(tmp_path):
    path = write_grid(tmp_path, [{"dataset": "medium-replay", "method": "bc"}])
    for readme, fragment in (
        (tmp_path / "missing.md", "cannot read"),
        (tmp_path, "cannot read"),
        (tmp_path / "plain.md", "no '<!-- grid:tiny:start -->'"),
    ):
        if readme.name == "plain.md":
            readme.write_text("no markers here\n")
        done = run_cli("grid", "report", str(path), "--readme", str(readme), cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert fragment in done.stderr
        assert not (tmp_path / "results.md").exists() and not (tmp_path / "curves.png").exists()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"data_scores": {"medium-replay": "high"}}, "'data_scores' must map datasets to numbers"),
        ({"compare": ["alm"]}, "'compare' must be a list of two"),
        ({"kl_reference": [87]}, "'kl_reference' must be a list of two"),
        ({"overrides": "steps=60"}, "overrides must be a list of KEY=VALUE strings"),
        ({"env": "Nope-v0"}, "Nope-v0"),
        ({"cells": [{"dataset": "medium-replay", "method": "bc"},
                    {"dataset": "medium-replay", "method": "sac"}]}, "method 'sac' is none of"),
        ({"cells": [{"dataset": "medium-replay", "method": "bc"},
                    {"dataset": "medium-replay", "overrides": ["agent.nope=1"]}]},
         "cell medium-replay--alm: "),
        ({"cells": [{"dataset": "medium-replay", "method": "bc"},
                    {"dataset": "medium-replay", "config": "no-such-config"}]},
         "cell medium-replay--alm: "),
    ],
)  # fmt: skip
def test_the_whole_grid_file_is_checked_when_loaded(tmp_path, change, fragment):
    from alm_offline.errors import AlmError

    path = write_grid(tmp_path, [{"dataset": "medium-replay", "method": "bc"}])
    raw = {**yaml.safe_load(path.read_text()), **change}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(AlmError, match=re.escape(fragment)):
        load_grid(path)


def test_a_grid_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    done = run_cli("grid", "run", str(path), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith(f"error: cannot read grid file '{path}'")
    assert done.stderr.count("\n") == 1
