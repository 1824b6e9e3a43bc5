"""Errors are handled once: an ``AlmError`` from any command is one ``error:`` line (exit 2),
an ``AlmWarning`` one ``warning:`` line, and any other exception keeps its traceback."""

from __future__ import annotations

import warnings

import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error

import alm_offline.datasets as datasets
from alm_offline.config import ConfigError
from alm_offline.core.metrics import NonFiniteError
from alm_offline.datasets import DatasetError, DatasetWarning
from alm_offline.errors import AlmError, AlmWarning
from alm_offline.runtime.envs import EnvError
from alm_offline.tools.evaluate import EvalError
from alm_offline.tools.plotting import PlotError
from alm_offline.tools.sweep import SweepError
from alm_offline.training.checkpoint import CheckpointError
from alm_offline.training.loggers import LoggerError
from alm_offline.training.rundir import RunDirError
from cli import alm


def test_every_user_facing_error_is_an_alm_error_and_none_is_a_value_error():
    for error in (
        CheckpointError,
        ConfigError,
        DatasetError,
        EnvError,
        EvalError,
        LoggerError,
        NonFiniteError,
        PlotError,
        RunDirError,
        SweepError,
    ):
        assert issubclass(error, AlmError) and not issubclass(error, ValueError), error
    assert issubclass(DatasetWarning, AlmWarning)


@pytest.mark.parametrize("error", [DatasetError, EnvError, ConfigError])
def test_an_alm_error_from_the_library_is_one_line(monkeypatch, error):
    def fail(folder=None):
        raise error(f"{error.__name__} raised deep inside")

    monkeypatch.setattr(datasets, "list_datasets", fail)
    result = CliRunner().invoke(alm, ["dataset", "list"])
    assert_one_line_error(result, f"{error.__name__} raised deep inside")


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(folder=None):
        raise ValueError("a bug, not the user's mistake")

    monkeypatch.setattr(datasets, "list_datasets", broken)
    result = CliRunner().invoke(alm, ["dataset", "list"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ValueError)  # not turned into a usage error
    assert "error:" not in result.output


def test_an_error_with_its_own_exit_status(monkeypatch):
    def diverged(folder=None):
        raise NonFiniteError("non-finite loss/critic at update 7")

    monkeypatch.setattr(datasets, "list_datasets", diverged)
    result = CliRunner().invoke(alm, ["dataset", "list"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip() == "error: non-finite loss/critic at update 7"


def test_warnings_become_lines_and_others_pass_through(monkeypatch):
    def noisy(folder=None):
        warnings.warn("ours, shown as a line", DatasetWarning, stacklevel=2)
        warnings.warn("ours again", DatasetWarning, stacklevel=2)  # "always": not deduplicated
        warnings.warn("a library's own", DeprecationWarning, stacklevel=2)
        return {"store": "s", "minari": [], "folder": None, "hdf5": []}

    monkeypatch.setattr(datasets, "list_datasets", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        result = CliRunner().invoke(alm, ["dataset", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "warning: ours, shown as a line" in lines and "warning: ours again" in lines
    assert any("DeprecationWarning: a library's own" in line for line in lines)
    assert "Minari store s: 0 datasets" in lines


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train-online", "--bogus"], "No such option '--bogus'"),
        (["baseline", "xyz"], "'xyz' is not one of 'bc', 'td3+bc', 'iql', 'cql'"),
        (["eval"], "Missing argument 'RUN_DIR|CHECKPOINT'"),
        (["nosuch"], "No such command 'nosuch'"),
        (["sweep", "--cpus-per-trial", "abc"], "'abc' is not a valid float"),
        (["dataset", "collect", "--steps", "x"], "'x' is not a valid integer"),
    ],
)
def test_click_usage_errors_are_one_error_line(args, fragment):
    result = CliRunner().invoke(alm, args)
    assert result.exit_code == 2
    assert_one_line_error(result, fragment)
    assert "--help)" in result.stderr and "Usage:" not in result.stderr


def test_help_and_success_still_exit_zero():
    result = CliRunner().invoke(alm, ["--help"])
    assert result.exit_code == 0 and "Usage: alm" in result.stdout


def test_mujoco_s_own_warnings_are_python_warnings_and_write_no_log(tmp_path):
    """HalfCheetah-v5's model once printed MuJoCo's 'WARNING: compiler attribute ...' line
    and wrote MUJOCO_LOG.TXT into the current folder; now MuJoCo's warnings reach Python
    (each once) and its model deprecation notices are dropped."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import warnings; warnings.simplefilter('always')\n"
        "from alm_offline.runtime import envs\n"
        "for _ in range(2): envs.make_env('HalfCheetah-v5').close()\n"
        "with warnings.catch_warnings(record=True) as said:\n"
        "    warnings.simplefilter('always')\n"
        "    for _ in range(2): envs.mujoco.get_mju_user_warning()('Nan in QACC at DOF 0')\n"
        "print([(w.category.__name__, str(w.message)) for w in said])\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(root)}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and list(tmp_path.iterdir()) == []
    assert eval(done.stdout) == [("MujocoWarning", "MuJoCo: Nan in QACC at DOF 0")]


@pytest.mark.parametrize("out", ["DIR", "/proc/no/such.json"])
def test_bench_refuses_its_out_before_it_measures(tmp_path, monkeypatch, out):
    import alm_offline.tools.update_speed as bench

    def measured(*args, **kwargs):
        raise AssertionError("the benchmark ran before --out was checked")

    monkeypatch.setattr(bench, "run_bench", measured)
    out = str(tmp_path) if out == "DIR" else out
    result = CliRunner().invoke(alm, ["bench", "--config", "quick", "--updates", "5", "--out", out])
    assert_one_line_error(result, "is a directory" if out == str(tmp_path) else "cannot write")


def test_the_cli_choices_come_from_the_tables_that_own_them():
    """--config names every bundled config, --device takes cuda:N as the config does, the
    sweep's --methods names every method (issue 42: no copy of a fact in cli.py)."""
    from click.testing import CliRunner

    from alm_offline.config import BUNDLED_CONFIGS, METHODS
    from cli import alm

    runner = CliRunner()
    train_help = " ".join(runner.invoke(alm, ["train-online", "--help"]).output.split())
    train_help = train_help.replace("- ", "-")  # click wraps a line after a hyphen
    assert all(name in train_help for name in BUNDLED_CONFIGS)
    sweep_help = " ".join(runner.invoke(alm, ["sweep", "--help"]).output.split())
    assert f"among {', '.join(METHODS)}" in sweep_help
    assert "auto|cpu|cuda|cuda:N" in runner.invoke(alm, ["bench", "--help"]).output
    bad = runner.invoke(alm, ["bench", "--device", "cuda:x"])
    assert bad.exit_code == 2
    assert "device must be auto, cpu, cuda or cuda:N, got 'cuda:x'" in bad.output
