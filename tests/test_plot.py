"""`alm plot` and tools.plotting on real run dirs: curves read back, seed statistics, PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_OVERRIDES, train_tiny_run
from matplotlib.image import imread

from alm_offline.config import load_config, to_yaml
from alm_offline.tools.plotting import (
    PlotError,
    find_run_dirs,
    group_curves,
    mean_band,
    mean_std,
    plot_learning_curves,
    plot_runs,
    read_run_curve,
)
from alm_offline.training.rundir import prepare_new
from cli import alm

# Hand-made HalfCheetah runs: seed -> {env_step: return_mean}. Seed 3 has one extra point.
CHEETAH = {
    1: {5000: 10.0, 10000: 100.0, 15000: 400.0},
    2: {5000: 30.0, 10000: 200.0, 15000: 600.0},
    3: {5000: 50.0, 10000: 600.0, 15000: 800.0, 20000: 900.0},
}


def write_run(run_dir: Path, env: str, seed: int, evals: dict[int, float]) -> Path:
    """A run dir in train_online's layout: config.yaml, eval.jsonl, metrics.jsonl, summary.json."""
    cfg = load_config(None, (f"env={env}", f"seed={seed}", f"run_dir={run_dir}"))
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    rows = [{"env_step": s, "updates": s - 5000, "return_mean": r} for s, r in evals.items()]
    (run_dir / "eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    metrics = [{"env_step": s, "updates": s - 5000, "loss/critic": s / 1e4} for s in evals]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metrics))
    (run_dir / "summary.json").write_text(json.dumps({"env": env, "mode": "online"}))
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One real (tiny) online run on InvertedPendulum-v5."""
    torch.set_num_threads(1)
    return train_tiny_run(tmp_path_factory.mktemp("tiny") / "run")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """sweep/cheetah/s{1,2,3} and sweep/hopper/s1, written by hand."""
    root = tmp_path_factory.mktemp("sweep")
    for seed, evals in CHEETAH.items():
        write_run(root / "cheetah" / f"s{seed}", "HalfCheetah-v5", seed, evals)
    write_run(root / "hopper" / "s1", "Hopper-v5", 1, {5000: 5.0, 10000: 7.0})
    return root


def assert_png(path: Path, width: int, height: int) -> None:
    image = imread(path)
    assert image.shape[:2] == (height, width)
    assert image[..., :3].std() > 0.01  # not blank
    assert not list(path.parent.glob(".*tmp*"))  # the temporary file was renamed away


@pytest.mark.slow
def test_read_real_run(tiny_run):
    curve = read_run_curve(tiny_run)
    evals = [json.loads(line) for line in (tiny_run / "eval.jsonl").read_text().splitlines()]
    assert (curve.env, curve.seed, curve.mode) == ("InvertedPendulum-v5", 1, "online")
    np.testing.assert_array_equal(curve.x, [150, 300])
    np.testing.assert_array_equal(curve.y, [row["return_mean"] for row in evals])
    loss = read_run_curve(tiny_run, "loss/critic")  # a metrics.jsonl key
    np.testing.assert_array_equal(loss.x, [150, 200, 250, 300])  # env steps of updates 50..200
    assert loss.y.shape == (4,) and np.isfinite(loss.y).all()


@pytest.mark.slow
def test_read_run_errors(tiny_run, tmp_path):
    with pytest.raises(PlotError, match="not a run directory"):
        read_run_curve(tmp_path)
    with pytest.raises(PlotError, match=r"unknown metric 'nope'.*return_mean"):
        read_run_curve(tiny_run, "nope")
    with pytest.raises(PlotError, match=r"metric 'returns' in .* is not a number"):
        read_run_curve(tiny_run, "returns")  # eval rows hold a list there
    fresh = tmp_path / "fresh"
    prepare_new(fresh, load_config(None, TINY_OVERRIDES), overwrite=False)
    with pytest.raises(PlotError, match=f"run dir '{fresh}' has no 'return_mean' rows yet"):
        read_run_curve(fresh)


def test_offline_runs_use_updates(tmp_path):
    run = write_run(tmp_path / "off", "Hopper-v5", 4, {})
    rows = [{"updates": 100, "return_mean": 1.5}, {"updates": 200, "return_mean": 2.5}]
    (run / "eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (run / "summary.json").unlink()  # mode from the rows: no env_step
    curve = read_run_curve(run)
    assert curve.mode == "offline"
    np.testing.assert_array_equal(curve.x, [100, 200])
    np.testing.assert_array_equal(curve.y, [1.5, 2.5])
    online = read_run_curve(write_run(tmp_path / "on", "Hopper-v5", 1, {100: 3.0}))
    assert list(group_curves([curve, online])) == ["Hopper-v5 (offline)", "Hopper-v5"]


def test_grouping_and_mean_std(sweep):
    runs = find_run_dirs([sweep])
    assert runs == [sweep / "cheetah" / f"s{s}" for s in (1, 2, 3)] + [sweep / "hopper" / "s1"]
    groups = group_curves(read_run_curve(run) for run in runs)
    assert list(groups) == ["HalfCheetah-v5", "Hopper-v5"]
    assert [c.seed for c in groups["HalfCheetah-v5"]] == [1, 2, 3]
    x, mean, std = mean_std(groups["HalfCheetah-v5"])
    np.testing.assert_array_equal(x, [5000, 10000, 15000])  # 20000: seed 3 only
    np.testing.assert_allclose(mean, [30.0, 300.0, 600.0])
    np.testing.assert_allclose(std, [np.sqrt(800 / 3), np.sqrt(140000 / 3), np.sqrt(80000 / 3)])
    x, mean, std = mean_std(groups["Hopper-v5"])
    np.testing.assert_array_equal(mean, [5.0, 7.0])
    np.testing.assert_array_equal(std, [0.0, 0.0])


def test_mean_std_interpolates_without_common_x(tmp_path):
    evals_a = {0: 0.0, 10: 10.0, 20: 20.0, 30: 30.0}
    a = read_run_curve(write_run(tmp_path / "a", "Ant-v5", 1, evals_a))
    b = read_run_curve(write_run(tmp_path / "b", "Ant-v5", 2, {5: 0.0, 15: 20.0, 25: 40.0}))
    x, mean, std = mean_std([a, b])
    np.testing.assert_array_equal(x, [5, 15, 25])  # the shorter run's x (all in [5, 25])
    np.testing.assert_allclose(mean, [2.5, 17.5, 32.5])  # a interpolated: 5, 15, 25
    np.testing.assert_allclose(std, [2.5, 2.5, 7.5])
    c = read_run_curve(write_run(tmp_path / "c", "Ant-v5", 3, {40: 1.0, 50: 2.0}))
    with pytest.raises(PlotError, match="cover no common x range"):
        mean_std([a, c])


@pytest.mark.slow
def test_plot_png(sweep, tiny_run, tmp_path):
    runs = [*find_run_dirs([sweep]), tiny_run]
    out = plot_learning_curves(runs, tmp_path / "new" / "curves.png")  # folder created
    assert out == tmp_path / "new" / "curves.png"
    assert_png(out, 1500, 350)  # 3 envs: one row of 3 subplots, 500 x 350 px each
    one = plot_learning_curves([sweep / "hopper" / "s1"], tmp_path / "one.png", "loss/critic")
    assert_png(one, 500, 350)


def test_plot_paper_overlay(sweep, tmp_path):
    cheetah = find_run_dirs([sweep / "cheetah"])
    plain = imread(plot_learning_curves(cheetah, tmp_path / "plain.png"))
    paper = imread(plot_learning_curves(cheetah, tmp_path / "paper.png", paper=True))
    assert paper.shape == plain.shape == (350, 500, 4)
    assert not np.array_equal(paper, plain)  # the overlay drew something
    # an env without a paper curve plots as without --paper
    hopper = [sweep / "hopper" / "s1"]
    a = imread(plot_learning_curves(hopper, tmp_path / "h1.png"))
    b = imread(plot_learning_curves(hopper, tmp_path / "h2.png", paper=True))
    np.testing.assert_array_equal(a, b)


def test_plot_out_errors(sweep, tmp_path):
    run = [sweep / "hopper" / "s1"]
    with pytest.raises(PlotError, match="is a directory"):
        plot_learning_curves(run, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(PlotError, match="cannot create folder"):
        plot_learning_curves(run, tmp_path / "file" / "sub" / "c.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(PlotError, match="is a directory"):
        plot_learning_curves(run, tmp_path / "dir.png")
    with pytest.raises(PlotError, match="needs a suffix"):
        plot_learning_curves(run, tmp_path / "curves")
    with pytest.raises(PlotError, match="unsupported image format"):
        plot_learning_curves(run, tmp_path / "c.xyz")


def run_cli(*args: str):
    return CliRunner().invoke(alm, list(args))


def test_cli_plot(sweep, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("plot", str(sweep), "--paper")
    assert result.exit_code == 0, result.output
    assert result.output == "wrote curves.png (4 runs, 2 envs)\n"
    assert_png(tmp_path / "curves.png", 1000, 350)
    out = tmp_path / "figs" / "loss.png"
    result = run_cli(
        "plot", str(sweep / "hopper" / "s1"), "--out", str(out), "--metric", "loss/critic"
    )
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {out} (1 run, 1 env)\n"
    assert_png(out, 500, 350)


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("empty", "holds none (no config.yaml within 3 levels)"),
        ("missing", "does not exist"),
        ("metric", "unknown metric 'no/such'"),
        ("out_dir", "is a directory"),
    ],
)
def test_cli_plot_bad_input(sweep, tmp_path, case, fragment):
    (tmp_path / "empty" / "a" / "b").mkdir(parents=True)
    run = str(sweep / "cheetah")
    args = {
        "empty": [str(tmp_path / "empty")],
        "missing": [str(tmp_path / "missing")],
        "metric": [run, "--metric", "no/such"],
        "out_dir": [run, "--out", str(tmp_path)],
    }[case]
    result = run_cli("plot", *args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert fragment in lines[0]


def write_offline_run(run_dir: Path, method: str, seed: int, scores: list[float]) -> Path:
    cfg = load_config(
        None,
        ("env=HalfCheetah-v5", f"method={method}", f"seed={seed}", "dataset=d/mr.hdf5",
         f"run_dir={run_dir}"),
    )  # fmt: skip
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    rows = [{"updates": 100 * (i + 1), "return_mean": v} for i, v in enumerate(scores)]
    (run_dir / "eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (run_dir / "summary.json").write_text(json.dumps({"mode": "offline"}))
    return run_dir


def test_a_line_per_method_with_the_means_bootstrap_interval(tmp_path):
    """Two methods on one dataset: one subplot, two lines of 2 seeds each; the band is the
    mean's 95% bootstrap interval (two runs: between their values), or ± std."""
    runs = [
        write_offline_run(tmp_path / "alm1", "alm", 1, [0.0, 10.0]),
        write_offline_run(tmp_path / "alm2", "alm", 2, [2.0, 30.0]),
        write_offline_run(tmp_path / "bc1", "bc", 1, [1.0, 1.0]),
        write_offline_run(tmp_path / "bc2", "bc", 2, [1.0, 3.0]),
    ]
    curves = [read_run_curve(run) for run in runs]
    assert [(c.method, c.dataset) for c in curves] == [("alm", "mr")] * 2 + [("bc", "mr")] * 2
    assert list(group_curves(curves)) == ["HalfCheetah-v5"]
    x, mean, low, high = mean_band(curves[:2], "ci")
    np.testing.assert_array_equal(x, [100, 200])
    np.testing.assert_array_equal(mean, [1.0, 20.0])
    np.testing.assert_array_equal(low, [0.0, 10.0])  # resampling two runs: the extremes
    np.testing.assert_array_equal(high, [2.0, 30.0])
    _, _, low, high = mean_band(curves[:2], "std")
    np.testing.assert_array_equal(low, [0.0, 10.0])
    np.testing.assert_array_equal(high, [2.0, 30.0])
    out = tmp_path / "curves.png"
    assert plot_runs([tmp_path], out).startswith(f"wrote {out} (4 runs, 1 env)")
    with pytest.raises(PlotError, match="--band must be one of ci, std"):
        plot_runs([tmp_path], out, band="sem")
