"""An online grid (``mode: online``): cells that train ALM (seeds batched in one process)
and d3rlpy's SAC on an env, land as cell files with each evaluation's wall seconds, and a
report that reads returns at fixed env steps, P(ALM > SAC) and seconds from those files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_cli

from alm_offline.tools.grid_file import GridError, load_grid
from alm_offline.tools.online_report import CellCurves, first_reach, online_report
from alm_offline.tools.stats import probability_of_improvement, summarise_seeds
from alm_offline.training.loggers import read_jsonl

REPO = Path(__file__).resolve().parents[1]
ENV = "InvertedPendulum-v5"
TINY = ["steps=400", "agent.warmup_steps=100", "eval.every=200", "eval.episodes=1",
        "checkpoint_every=200", "agent.hidden_dim=32", "agent.model_hidden_dim=32",
        "agent.batch_size=32", "threads=1"]  # fmt: skip


def write_grid(folder: Path, **changes: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    grid = {
        "name": "tiny-online",
        "mode": "online",
        "config": "quick",
        "seeds": [1, 2],
        "seeds_per_trial": 2,
        "overrides": TINY,
        "compare": ["alm", "sac"],
        "read_at": [200, 400],
        "cells": [
            {"env": ENV, "method": "alm", "label": "ALM"},
            {"env": ENV, "method": "sac", "label": "SAC"},
        ],
        **changes,
    }
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.mark.slow
def test_an_online_grid_lands_alm_and_sac_cells_and_reports_them(tmp_path, baselines_python):
    path = write_grid(tmp_path / "results")
    run = ["grid", "run", str(path), "--work-dir", str(tmp_path / "work"),
           "--python", baselines_python, "--cells-at-once", "2"]  # fmt: skip
    done = run_cli(*run, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2 cell(s) written" in done.stdout

    records = {}
    for method in ("alm", "sac"):
        record = json.loads((tmp_path / f"results/cells/{ENV}--{method}.json").read_text())
        records[method] = record
        assert (record["env"], record["method"], record["data_file"]) == (ENV, method, None)
        assert record["command"].startswith(f"alm sweep --envs {ENV} --methods {method}")
        assert "env steps" in record["protocol"] and record["config"]["steps"] == 400
        for seed in record["seeds"].values():
            rows = read_jsonl(Path(seed["run_dir"]) / "eval.jsonl")
            assert [e["env_steps"] for e in seed["evaluations"]] == [200, 400]
            assert [e["return"] for e in seed["evaluations"]] == [r["return_mean"] for r in rows]
            walls = [e["wall_seconds"] for e in seed["evaluations"]]
            assert 0 < walls[0] < walls[1] <= seed["wall_seconds"]
            assert seed["score"] == pytest.approx(np.mean([r["return_mean"] for r in rows]))
            summary = json.loads((Path(seed["run_dir"]) / "summary.json").read_text())
            assert record["commit"] == summary["code"]["commit"]  # the code that trained it
    alm_runs = [Path(s["run_dir"]) for s in records["alm"]["seeds"].values()]
    assert alm_runs[0].parent == alm_runs[1].parent  # one process trained both ALM seeds
    assert [p.parent.name for p in alm_runs] == [ENV, ENV]  # ALM alone: no method folder
    sac_runs = [Path(s["run_dir"]) for s in records["sac"]["seeds"].values()]
    assert [p.parent.parent.name for p in sac_runs] == [ENV, ENV]  # <env>/sac/s<seed>
    assert [p.parent.name for p in sac_runs] == ["sac", "sac"]
    sweep_tables = {m: (tmp_path / f"work/{ENV}--{m}/results.md").read_text() for m in records}
    assert "| ALM (this run: tiny-online-" in sweep_tables["alm"]
    assert "| SAC (d3rlpy) |" in sweep_tables["sac"]

    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- grid:tiny-online:start -->\n<!-- grid:tiny-online:end -->\nb\n")
    report = run_cli("grid", "report", str(path), "--readme", str(readme), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    table = (tmp_path / "results/results.md").read_text()

    def returns(method: str, index: int) -> list[float]:
        return [s["evaluations"][index]["return"] for s in records[method]["seeds"].values()]

    assert "| IQM at 200 | IQM at 400 | IQM over the curve (area) |" in table
    row = next(line for line in table.splitlines() if line.startswith(f"| {ENV} | ALM |"))
    assert summarise_seeds(returns("alm", 1)).iqm.describe() in row
    pair = next(line for line in table.splitlines() if "P(alm > sac)" in line)
    assert probability_of_improvement(returns("alm", 1), returns("sac", 1)).describe(2) in pair
    sac_row = next(line for line in table.splitlines() if line.startswith(f"| {ENV} | SAC | 1 |"))
    seconds = np.mean(
        [s["evaluations"][1]["wall_seconds"] for s in records["sac"]["seeds"].values()]
    )
    assert f"| {seconds / 400:.4f} |" in sac_row
    assert f"| {ENV} | ALM | 2 |" in table and "Every cell is measured." in table
    assert table.split("\n", 2)[2] in readme.read_text()
    assert (tmp_path / "results/curves.png").stat().st_size > 0

    # a cell not yet whole is not summarised, but its landed seeds are said with their scores
    (tmp_path / f"results/cells/{ENV}--sac.json").unlink()
    (tmp_path / f"results/cells/seeds/{ENV}--sac/s2.json").unlink()
    online_report(load_grid(path))
    score = records["sac"]["seeds"]["1"]["score"]
    expected = f"Not measured yet: {ENV}--sac (seed 1 of 2 landed, score {score:.1f})."
    assert expected in (tmp_path / "results/results.md").read_text()


@pytest.mark.slow
def test_a_failed_cell_stops_the_grid_after_the_cells_beside_it(tmp_path):
    """Two cells at once, both SAC run by an interpreter without d3rlpy: each sweep says
    why in one line, and the grid, having waited for both to end, exits with one error line
    naming the first cell that failed."""
    cells = [{"env": ENV, "method": "sac"}, {"env": "Hopper-v5", "method": "sac"}]
    path = write_grid(tmp_path / "results", cells=cells, seeds=[1])
    done = run_cli("grid", "run", str(path), "--work-dir", str(tmp_path / "work"),
                   "--python", sys.executable, "--cells-at-once", "2", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)
    assert all("has no d3rlpy" in line for line in lines[:2])  # both sweeps ran and ended
    assert lines[2].startswith(f"error: cell {ENV}--sac: its sweep exited 2")
    assert "seeds 1: alm sweep --envs Hopper-v5" in done.stdout  # the second cell started
    assert not (tmp_path / "results/cells").exists()


def test_first_reach_reads_the_iqm_and_charges_a_batch_per_seed():
    curves = CellCurves(
        steps=np.array([100, 200, 300]),
        returns=np.array([[0.0, 5.0, 9.0], [0.0, 6.0, 9.0], [1.0, 1.0, 9.0], [0.0, 7.0, 9.0]]),
        wall=np.array([[10.0, 20.0, 30.0]] * 4),
        seeds_per_process=4,
    )
    # IQM of four seeds: the mean of the middle two; at 200 steps (1, 5, 6, 7) -> 5.5
    assert first_reach(curves, 5.5) == (200, 5.0)  # 20 s of a process of four seeds
    assert first_reach(curves, 5.6) == (300, 7.5)
    assert first_reach(curves, 9.1) is None
    np.testing.assert_allclose(curves.area, [14 / 3, 5.0, 11 / 3, 16 / 3])


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"mode": "sideways"}, "'mode' must be one of online, offline"),
        ({"cells": [{"dataset": "medium"}]}, "cell 1 of an online grid must name an env"),
        ({"cells": [{"env": ENV, "method": "iql"}]}, "method 'iql' is none of ('alm', 'sac')"),
        ({"cells": [{"env": "Nope-v9"}]}, "Nope-v9"),
        ({"read_at": [0]}, "'read_at' must be a list of env steps"),
    ],
)
def test_a_bad_online_grid_file_is_one_line(tmp_path, changes, fragment):
    path = write_grid(tmp_path, **changes)
    with pytest.raises(Exception) as caught:
        load_grid(path)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    if "Nope" not in fragment:
        assert isinstance(caught.value, GridError)
    done = run_cli("grid", "run", str(path), cwd=tmp_path)
    assert done.returncode != 0 and done.stderr.startswith("error:")
    assert "Traceback" not in done.stderr
