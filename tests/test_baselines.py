"""alm baseline: d3rlpy's offline algorithms in alm's run dirs, through a real d3rlpy.

d3rlpy 2.8 pins gymnasium==1.0.0, so it lives in its own venv (``make baselines-env``,
``.venv-baselines``); these tests drive that venv's python as a subprocess, which also runs
the project under gymnasium 1.0 while the suite itself runs under the newest gymnasium.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from alm_offline.datasets.action_box import ActionBox
from alm_offline.datasets.episodes import EpisodeDataset
from alm_offline.datasets.hdf5 import write_hdf5
from alm_offline.tools.stats import final_score

BOX = ActionBox.of_env("InvertedPendulum-v5")
REPO = Path(__file__).resolve().parents[1]
BASELINE_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def run_in(python: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, *args], capture_output=True, text=True, cwd=cwd, env=BASELINE_ENV, timeout=600
    )


def test_without_d3rlpy_the_command_names_the_install(tmp_path):
    """Where d3rlpy cannot be imported (made so here, whatever this env has): one line,
    exit 2, nothing written."""
    no_d3rlpy = (
        "import sys; sys.modules['d3rlpy'] = None; from cli import main; "
        f"sys.argv = ['alm', 'baseline', 'td3+bc', 'run_dir={tmp_path}/run']; main()"
    )
    result = run_in(sys.executable, "-c", no_d3rlpy, cwd=REPO)
    assert result.returncode == 2
    expected = "error: alm baseline needs d3rlpy: pip install 'alm-offline[baselines]'"
    assert result.stderr.strip() == expected
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_venv_resolves_d3rlpy_with_gymnasium_1_0(baselines_python, tmp_path):
    out = run_in(
        baselines_python,
        "-c",
        "import importlib.metadata as m; print(m.version('d3rlpy'), m.version('gymnasium'))",
        cwd=tmp_path,
    ).stdout.split()
    assert out[0].startswith("2.") and out[1] == "1.0.0"


CONVERSION = """
import json, sys
from alm_offline.training.baselines import import_d3rlpy, to_mdp_dataset
from alm_offline.datasets import load_dataset
data = load_dataset(sys.argv[1])
mdp = to_mdp_dataset(data, import_d3rlpy())
eps = mdp.episodes
print(json.dumps({
    "transitions": int(sum(e.transition_count for e in eps)),
    "episodes": len(eps),
    "terminated": [bool(e.terminated) for e in eps],
    "last_next_obs": [
        __import__("d3rlpy").dataset.BasicTransitionPicker()(e, e.transition_count - 1)
        .next_observation.tolist() for e in eps],
}))
"""


TABLE_CHECK = """
import json, numpy as np
from alm_offline.baseline_table import BASELINES
from alm_offline.config import BASELINE_METHODS
from alm_offline.training.baselines import algo_config, import_d3rlpy
d3rlpy = import_d3rlpy()
made = {m: algo_config(m, d3rlpy, 1000, "hopper-medium-v0") for m in BASELINES}
other = algo_config("cql", d3rlpy, 1000, "hopper-medium-replay-v0")
print(json.dumps({
    "methods": list(BASELINE_METHODS),
    "types": {m: type(c).__name__ for m, c in made.items()},
    "alpha": made["td3+bc"].alpha, "expectile": made["iql"].expectile,
    "iql_T": made["iql"].actor_optim_factory.lr_scheduler_factory.T_max,
    "cql": [made["cql"].conservative_weight, other.conservative_weight],
    "refuse": [BASELINES[m].refuses(np.array([3.0, 3.0])) is not None for m in BASELINES],
}))
"""


@pytest.mark.slow
def test_one_table_names_each_baseline_and_builds_its_d3rlpy_config(baselines_python, tmp_path):
    """config.BASELINE_METHODS is baseline_table.BASELINES' keys; each row builds d3rlpy's
    config with the D4RL settings; only IQL refuses data whose returns do not spread."""
    done = run_in(baselines_python, "-c", TABLE_CHECK, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["methods"] == ["bc", "td3+bc", "iql", "cql"]
    assert got["types"] == {"bc": "BCConfig", "td3+bc": "TD3PlusBCConfig", "iql": "IQLConfig",
                            "cql": "CQLConfig"}  # fmt: skip
    assert (got["alpha"], got["expectile"], got["iql_T"]) == (2.5, 0.7, 1000)
    assert got["cql"] == [10.0, 5.0]
    assert got["refuse"] == [False, False, True, False]


@pytest.mark.slow
def test_the_mdp_dataset_keeps_every_transition(baselines_python, tmp_path):
    """A terminated episode keeps its T steps; a truncated one its T steps too (d3rlpy would
    drop its last), the last with the episode's final observation as next observation."""
    rng = np.random.default_rng(0)
    lengths = [5, 7]
    episodes = []
    for i, length in enumerate(lengths):
        episodes.append(
            {
                "observations": rng.normal(size=(length + 1, 4)).astype(np.float32),
                "actions": rng.uniform(-1, 1, size=(length, 1)).astype(np.float32),
                "rewards": np.ones(length, dtype=np.float32),
                "terminations": np.arange(length) == length - 1 if i == 0 else np.zeros(length),
                "truncations": np.zeros(length) if i == 0 else np.arange(length) == length - 1,
            }
        )
    data = EpisodeDataset.from_episodes(episodes, env_id="InvertedPendulum-v5", action_box=BOX)
    write_hdf5(data, tmp_path / "tiny.hdf5")
    result = run_in(baselines_python, "-c", CONVERSION, str(tmp_path / "tiny.hdf5"), cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["transitions"] == sum(lengths)
    assert got["episodes"] == 2
    assert got["terminated"] == [True, False]
    assert np.allclose(got["last_next_obs"][1], episodes[1]["observations"][-1])


@pytest.fixture(scope="module")
def baseline_runs(baselines_python, tmp_path_factory) -> dict[str, Path]:
    """bc, td3+bc, iql and cql on the bundled InvertedPendulum-v5 dataset, a few updates."""
    root = tmp_path_factory.mktemp("baselines")
    runs = {}
    for algo, steps in (("bc", 200), ("td3+bc", 200), ("iql", 100), ("cql", 20)):
        run_dir = root / algo.replace("+", "")
        every = steps // 2
        result = run_in(
            baselines_python,
            "-m",
            "cli",
            "baseline",
            algo,
            f"steps={steps}",
            f"eval.every={every}",
            f"log_every={every}",
            "eval.episodes=2",
            "threads=1",
            f"run_dir={run_dir}",
            cwd=root,
        )
        assert result.returncode == 0, (algo, result.stderr[-2000:])
        assert "Gym has been unmaintained" not in result.stderr
        assert "run dir:" in result.stdout
        runs[algo] = run_dir
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["bc", "td3+bc", "iql", "cql"])
def test_a_baseline_writes_an_alm_run_dir(baseline_runs, algo):
    run_dir = baseline_runs[algo]
    summary = json.loads((run_dir / "summary.json").read_text())
    steps = summary["updates"]
    assert summary["method"] == algo and summary["mode"] == "offline"
    assert summary["env"] == "InvertedPendulum-v5"
    assert summary["d3rlpy_version"].startswith("2.")
    assert [at for at, _ in summary["evaluations"]] == [steps // 2, steps]
    assert summary["updates_per_sec"] > 0
    rows = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert [r["updates"] for r in rows] == [steps // 2, steps]
    assert all(len(r["returns"]) == 2 and r["return_mean"] > 0 for r in rows)
    assert summary["eval_return_mean"] == rows[-1]["return_mean"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["method"] == algo
    assert (run_dir / "checkpoints" / "d3rlpy.d3").stat().st_size > 1000
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["updates"] for m in metrics] == [steps // 2, steps]


@pytest.mark.slow
def test_alm_eval_of_a_baseline_run_replays_its_evaluation(baseline_runs, baselines_python):
    """``alm eval`` of a finished baseline run evaluates its d3rlpy model with ALM's seeded
    protocol: the returns of its last eval.jsonl row come back (and --best reads best.d3)."""
    run_dir = baseline_runs["td3+bc"]

    def alm_eval(*extra: str) -> dict:
        args = ("eval", str(run_dir), *extra, "--episodes", "2", "--seed", "1", "--json")
        result = run_in(baselines_python, "-m", "cli", *args, cwd=REPO)
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout)

    last = json.loads((run_dir / "eval.jsonl").read_text().splitlines()[-1])
    report = alm_eval()
    assert report["returns"] == last["returns"]
    assert report["checkpoint"].endswith("checkpoints/d3rlpy.d3")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_checkpoint"].endswith("checkpoints/best.d3")
    assert alm_eval("--best")["return_mean"] == summary["best_eval_return_mean"]


@pytest.mark.slow
def test_alm_eval_of_a_baseline_run_without_d3rlpy_names_the_install(baseline_runs):
    result = subprocess.run(
        [sys.executable, "-m", "cli", "eval", str(baseline_runs["bc"])],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "error: alm baseline needs d3rlpy: pip install 'alm-offline[baselines]'"
    )


@pytest.mark.slow
def test_a_baseline_without_evaluations_finishes(baselines_python, tmp_path):
    run_dir = tmp_path / "bc"
    result = run_in(
        baselines_python,
        "-m",
        "cli",
        "baseline",
        "bc",
        "steps=20",
        "log_every=10",
        "eval.episodes=0",
        "threads=1",
        f"run_dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["updates"] == 20 and summary["evaluations"] == []
    assert summary["eval_return_mean"] is None and summary["best_checkpoint"] is None
    assert not (run_dir / "eval.jsonl").exists() or (run_dir / "eval.jsonl").read_text() == ""


@pytest.mark.slow
def test_iql_refuses_data_whose_episodes_all_return_the_same(baselines_python, tmp_path):
    episodes = [
        {
            "observations": np.zeros((11, 4), dtype=np.float32),
            "actions": np.zeros((10, 1), dtype=np.float32),
            "rewards": np.ones(10, dtype=np.float32),
            "terminations": np.arange(10) == 9,
            "truncations": np.zeros(10),
        }
    ] * 3
    write_hdf5(
        EpisodeDataset.from_episodes(episodes, env_id="InvertedPendulum-v5", action_box=BOX),
        tmp_path / "same.hdf5",
    )
    result = run_in(
        baselines_python,
        "-m",
        "cli",
        "baseline",
        "iql",
        "--dataset",
        str(tmp_path / "same.hdf5"),
        f"run_dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: iql scales rewards")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_project_runs_under_gymnasium_1_0(baselines_python, tmp_path):
    """The core commands in the d3rlpy venv: collect a dataset, read it, train offline ALM."""
    data = tmp_path / "random.hdf5"
    steps = [
        ("dataset", "collect", "--env", "Hopper-v5", "--steps", "300", "--out", str(data)),
        ("dataset", "info", str(data), "--json"),
        (
            "train-offline",
            "--dataset",
            str(data),
            "--quiet",
            "steps=20",
            "eval.every=20",
            "eval.episodes=1",
            "threads=1",
            f"run_dir={tmp_path}/alm",
        ),
    ]
    outputs = []
    for args in steps:
        result = run_in(baselines_python, "-m", "cli", *args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr[-2000:])
        outputs.append(result.stdout)
    assert json.loads(outputs[1])["steps"] == 300
    summary = json.loads((tmp_path / "alm" / "summary.json").read_text())
    assert summary["updates"] == 20 and summary["env"] == "Hopper-v5"


@pytest.mark.slow
def test_an_offline_sweep_puts_alm_and_baselines_in_one_table(baselines_python, tmp_path):
    """A real local Ray sweep: 2 datasets x (alm, td3+bc) x 1 seed, trials run by the
    d3rlpy venv's python; results.md has a row per method and a column per dataset."""
    pytest.importorskip("ray")  # a dev dependency of the suite's own env
    bundled = REPO / "datasets/bundled/inverted_pendulum-alm-v0.hdf5"
    second = tmp_path / "second.hdf5"
    result = run_in(
        sys.executable, "-m", "cli", "dataset", "convert", str(bundled), str(second), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "sw"
    command = [
        "-m", "cli", "sweep", "--datasets", f"{bundled},{second}", "--methods",
        "alm,td3+bc", "--seeds", "1", "--python", baselines_python, "--out", str(out),
        "--config", "offline", "steps=40", "eval.every=20", "log_every=20", "eval.episodes=1",
    ]  # fmt: skip
    result = run_in(sys.executable, *command, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((out / "sweep.json").read_text())
    assert [(t["method"], t["status"]) for t in record["trials"]] == [
        ("alm", "ok"),
        ("td3+bc", "ok"),
    ] * 2
    table = (out / "results.md").read_text().splitlines()
    assert table[0].startswith("| Method | inverted_pendulum-alm-v0.hdf5 | second.hdf5 |")
    assert [line.split(" | ")[0] for line in table[2:4]] == ["| offline ALM", "| TD3+BC (d3rlpy)"]
    assert table[4] == "" and table[5].startswith("Offline scores: the mean of each run's last 3")
    assert table[6].startswith("P(alm > td3+bc) [95% CI]: inverted_pendulum-alm-v0.hdf5 ")
    for t in record["trials"]:  # a run's score: the mean of its last 3 evaluations
        evals = [json.loads(line) for line in (Path(t["run_dir"]) / "eval.jsonl").open()]
        normalised = evals[-1].get("normalized_score_mean") is not None
        key = "normalized_score_mean" if normalised else "return_mean"
        cell = f"{final_score([e[key] for e in evals]):.1f} ± 0.0"
        name = {"alm": "offline ALM", "td3+bc": "TD3+BC (d3rlpy)"}
        assert any(line.startswith(f"| {name[t['method']]} |") and cell in line for line in table)
        assert t["summary"]["updates"] == 40 and t["summary"]["updates_per_sec"] > 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4 and {r["method"] for r in rows} == {"alm", "td3+bc"}
    assert (out / "curves.png").stat().st_size > 1000
