"""`alm grid summary`: one table over several grids, its means and its comparison with the
better baseline, from cell files written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from click.testing import CliRunner

from alm_offline.tools.stats import probability_of_improvement, summarise_seeds
from cli import alm

HOPPER_MEDIUM = {"alm": [50, 52, 54, 56, 90], "td3+bc": [40, 41, 42, 43, 44]}
HOPPER_MEDIUM["iql"] = [45, 46, 47, 48, 49]
HOPPER_REPLAY = {"alm": [20, 21, 22, 23, 24], "td3+bc": [30, 31, 32, 33, 34]}
HOPPER_REPLAY["iql"] = [10, 11, 12, 13, 14]
WALKER_MEDIUM = {"alm": [60, 61, 62, 63, 64], "td3+bc": [70, 71, 72, 73, 74]}  # no iql yet
WALKER_REPLAY = {"alm": [5, 6, 7, 8, 9], "td3+bc": [1, 2, 3, 4, 5], "iql": [2, 3, 4, 5, 6]}
SCORES = {  # env -> dataset -> method -> five seeds' scores
    "Hopper-v5": {"medium": HOPPER_MEDIUM, "medium-replay": HOPPER_REPLAY},
    "Walker2d-v5": {"medium": WALKER_MEDIUM, "medium-replay": WALKER_REPLAY},
}


def write_grids(root: Path) -> Path:
    grids = []
    for env, datasets in SCORES.items():
        folder = root / env.lower()
        (folder / "cells").mkdir(parents=True)
        cells = []
        for dataset, methods in datasets.items():
            for method in ("alm", "td3+bc", "iql"):
                cells.append({"dataset": dataset, "method": method})
                if method in methods:
                    seeds = {
                        str(i + 1): {"score": s, "evaluations": [{"updates": 100, "score": s}]}
                        for i, s in enumerate(methods[method])
                    }
                    record = {
                        "grid": env.lower(), "dataset": dataset, "method": method,
                        "variant": method, "data_file": f"{dataset}.hdf5",
                        "config": {"steps": 100}, "seeds": seeds,
                    }  # fmt: skip
                    (folder / "cells" / f"{dataset}--{method}.json").write_text(json.dumps(record))
        grid = {
            "name": env.lower(), "env": env, "data": str(root), "config": "offline",
            "datasets": {d: f"{d}.hdf5" for d in datasets}, "seeds": [1, 2, 3, 4, 5],
            "overrides": ["steps=100"], "cells": cells,
        }  # fmt: skip
        (folder / "grid.yaml").write_text(yaml.safe_dump(grid))
        grids.append(str(folder / "grid.yaml"))
    summary = {
        "name": "loco", "grids": grids, "datasets": ["medium", "medium-replay"],
        "methods": {"ALM": "alm", "TD3+BC": "td3+bc", "IQL": "iql"},
        "compare": ["ALM", ["TD3+BC", "IQL"]], "caption": "Budget: 50000 updates.",
    }  # fmt: skip
    path = root / "loco.yaml"
    path.write_text(yaml.safe_dump(summary, sort_keys=False))
    return path


def test_summary_table_rows_means_and_best_baseline(tmp_path: Path) -> None:
    path = write_grids(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("top\n<!-- grid:loco:start -->\nold\n<!-- grid:loco:end -->\nbottom\n")
    result = CliRunner().invoke(alm, ["grid", "summary", str(path), "--readme", str(readme)])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "loco.md").read_text()
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in table.splitlines()}
    hopper_medium = rows[("Hopper-v5", "medium")]
    alm_scores = SCORES["Hopper-v5"]["medium"]["alm"]
    assert summarise_seeds(alm_scores).iqm.describe() in hopper_medium  # 54.0 [...]
    best = probability_of_improvement(alm_scores, SCORES["Hopper-v5"]["medium"]["iql"])
    assert f"{best.describe(2)} (IQL)" in hopper_medium  # IQL's IQM 47 beats TD3+BC's 42
    assert "(TD3+BC)" in rows[("Hopper-v5", "medium-replay")]
    assert "not measured" in rows[("Walker2d-v5", "medium")]
    assert rows[("Walker2d-v5", "medium")].rstrip().endswith("| – |")  # no comparison
    hopper_mean = rows[("Hopper-v5 mean", "")].split("|")
    expected = np.mean([np.mean(alm_scores), np.mean(SCORES["Hopper-v5"]["medium-replay"]["alm"])])
    assert hopper_mean[3].strip() == f"{expected:.1f}"
    walker_mean = rows[("Walker2d-v5 mean", "")].split("|")
    assert walker_mean[5].strip() == "–"  # IQL's Walker2d medium is missing
    everything = rows[("**mean of all 4**", "")].split("|")
    all_alm = [np.mean(m["alm"]) for d in SCORES.values() for m in d.values()]
    assert everything[3].strip() == f"{np.mean(all_alm):.1f}"
    text = readme.read_text()
    assert text.startswith("top\n<!-- grid:loco:start -->\n| env | dataset |")
    assert "Budget: 50000 updates." in text and text.endswith("<!-- grid:loco:end -->\nbottom\n")


def test_a_bad_summary_is_one_line(tmp_path: Path) -> None:
    path = write_grids(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["compare"] = ["ALM", ["SAC"]]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = CliRunner().invoke(alm, ["grid", "summary", str(path)])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert "'compare' must be" in result.output and len(result.output.splitlines()) == 1
    missing = tmp_path / "README.md"
    raw["compare"] = ["ALM", ["IQL"]]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = CliRunner().invoke(alm, ["grid", "summary", str(path), "--readme", str(missing)])
    assert result.exit_code == 2 and "cannot read" in result.output
    assert not (tmp_path / "loco.md").exists()  # nothing written before the README was read
