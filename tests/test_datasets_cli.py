"""`alm dataset ...`: happy paths, and every bad input as a one-line error without traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result

from alm_offline.datasets import collect, random_policy, write_hdf5
from cli import alm


@pytest.fixture(scope="module")
def pendulum_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = collect("InvertedPendulum-v5", random_policy(1, seed=0), steps=200, seed=0)
    return write_hdf5(data, tmp_path_factory.mktemp("data") / "pendulum.hdf5")


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(alm, ["dataset", *map(str, args)])


def assert_user_error(result: Result, message: str) -> None:
    """Exit code 2, a SystemExit (no exception escaped), one `error:` line, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ happy paths
def test_collect_convert_info_list(tmp_path: Path, minari_store: Path) -> None:
    result = run(
        "collect",
        "--env",
        "InvertedPendulum-v5",
        "--steps",
        "150",
        "--out",
        tmp_path / "p.hdf5",
        "--noise",
        "0.1",
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert "150 steps" in result.stdout and "mean return" in result.stdout

    result = run("convert", tmp_path / "p.hdf5", minari_store / "alm" / "p-v0")
    assert result.exit_code == 0, result.output

    result = run("convert", "alm/p-v0", tmp_path / "back.h5")
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "p.hdf5") as a, h5py.File(tmp_path / "back.h5") as b:
        for name in ("observations", "actions", "rewards", "terminals", "timeouts"):
            assert np.array_equal(a[name][()], b[name][()]), name

    result = run("info", "alm/p-v0", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 150 and summary["env_id"] == "InvertedPendulum-v5"
    assert summary["metadata"]["noise"] == 0.1

    result = run("info", tmp_path / "back.h5")
    assert result.exit_code == 0, result.output
    assert "steps:" in result.stdout and "returns:" in result.stdout

    result = run("list", tmp_path)
    assert result.exit_code == 0, result.output
    assert "alm/p-v0" in result.stdout and "back.h5" in result.stdout


def test_collect_episodes_to_minari_with_reference_scores(tmp_path: Path) -> None:
    result = run("collect", "--env", "Hopper-v5", "--episodes", "2", "--out", tmp_path / "hop-v0")
    assert result.exit_code == 0, result.output
    summary = json.loads(run("info", tmp_path / "hop-v0", "--json").stdout)
    assert summary["episodes"] == 2
    assert (summary["ref_min_score"], summary["ref_max_score"]) == (-20.272305, 3234.3)


def test_clip_actions_flag(tmp_path: Path, pendulum_file: Path) -> None:
    source = tmp_path / "wide.hdf5"
    shutil.copy(pendulum_file, source)
    with h5py.File(source, "a") as file:
        file["actions"][0] = 5.0  # the pendulum's box is [-3, 3] in env units
    assert_user_error(
        run("info", source),
        "1 action values lie outside the action box [-3, 3] of InvertedPendulum-v5 (by up to 2)",
    )
    result = run("convert", source, tmp_path / "clipped.hdf5", "--clip-actions")
    assert result.exit_code == 0, result.output
    assert "warning: clipped 1 action values" in result.stderr
    with h5py.File(tmp_path / "clipped.hdf5") as file:
        assert file["actions"][0, 0] == 3.0


# ------------------------------------------------------------------- bad input
def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\x01 definitely not HDF5")


def _only_observations(path: Path) -> None:
    with h5py.File(path, "w") as file:
        file["observations"] = np.zeros((4, 3), dtype=np.float32)


def _edit(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path, Path], None]:
    def make(path: Path, pendulum_file: Path) -> None:
        shutil.copy(pendulum_file, path)
        with h5py.File(path, "a") as file:
            array = change(file[name][()])
            del file[name]
            file[name] = array

    return make


def _nan_reward(rewards: np.ndarray) -> np.ndarray:
    rewards[5] = np.nan
    return rewards


BAD_SOURCES = {
    "missing file": (None, [], "no such file"),
    "not hdf5": (lambda p, _: _garbage(p), [], "is not an HDF5 file"),
    "no required keys": (
        lambda p, _: _only_observations(p),
        [],
        "lacks the D4RL arrays actions, rewards, terminals",
    ),
    "mismatched lengths": (_edit("rewards", lambda r: r[:-3]), [], "rewards has 197 rows"),
    "nan rewards": (_edit("rewards", _nan_reward), [], "rewards hold 1 NaN or infinite"),
    "env dims": (
        lambda p, f: shutil.copy(f, p),
        ["--env", "Hopper-v5"],
        "dataset has obs dim 4 and action dim 1, env Hopper-v5 has 11 and 3",
    ),
    "unknown env": (lambda p, f: shutil.copy(f, p), ["--env", "NoSuchEnv-v9"], "NoSuchEnv-v9"),
    "one reference score": (lambda p, f: shutil.copy(f, p), ["--ref-min", "1"], "both reference"),
}


@pytest.mark.parametrize("case", list(BAD_SOURCES))
@pytest.mark.parametrize("dst_name", ["out.hdf5", "out-v0"])
def test_bad_source_is_a_one_line_error(case, dst_name, tmp_path, pendulum_file) -> None:
    make, extra, message = BAD_SOURCES[case]
    source = tmp_path / "source.hdf5"
    if make is not None:
        make(source, pendulum_file)
    before = (source.read_bytes(), source.stat().st_mtime_ns) if source.exists() else None
    dst = tmp_path / dst_name
    assert_user_error(run("convert", source, dst, *extra), message)
    assert not dst.exists()
    after = (source.read_bytes(), source.stat().st_mtime_ns) if source.exists() else None
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == (["source.hdf5"] if make else [])


def test_minari_folder_without_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "broken-v0"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "main_data.hdf5").write_bytes(b"")
    assert_user_error(run("convert", folder, tmp_path / "out.hdf5"), "not a Minari dataset folder")
    assert_user_error(run("info", folder), "no data/metadata.json")
    assert not (tmp_path / "out.hdf5").exists()


@pytest.mark.parametrize("dst_name", ["taken.hdf5", "taken-v0"])
def test_existing_destination_needs_overwrite(tmp_path, pendulum_file, dst_name) -> None:
    dst = tmp_path / dst_name
    assert run("convert", pendulum_file, dst).exit_code == 0
    marker = dst / "data" / "metadata.json" if dst.is_dir() else dst
    before = (marker.read_bytes(), marker.stat().st_mtime_ns)
    assert_user_error(run("convert", pendulum_file, dst), "already exists (pass --overwrite")
    assert_user_error(
        run("collect", "--env", "Hopper-v5", "--steps", "5", "--out", dst), "already exists"
    )
    assert (marker.read_bytes(), marker.stat().st_mtime_ns) == before
    result = run("convert", pendulum_file, dst, "--overwrite", "--ref-min", "0", "--ref-max", "9")
    assert result.exit_code == 0, result.output
    assert json.loads(run("info", dst, "--json").stdout)["ref_max_score"] == 9.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "mujoco/nothing/here-v0"], "--download or `minari download"),
        (["info", "not a dataset"], "neither a file, a folder nor a Minari dataset id"),
        (["convert", "{src}", "{tmp}/plainname"], "must be named like NAME-v0"),
        (["collect", "--env", "Hopper-v5", "--out", "{tmp}/x.hdf5"], "exactly one of --steps"),
        (["collect", "--env", "Nope-v1", "--steps", "5", "--out", "{tmp}/x.hdf5"], "Nope-v1"),
        (
            [
                "collect",
                "--env",
                "Hopper-v5",
                "--steps",
                "5",
                "--policy",
                "{tmp}/no.pt",
                "--out",
                "{tmp}/x.hdf5",
            ],
            "must be 'random' or a checkpoint path",
        ),
        (["list", "{tmp}/missing-folder"], "no such folder"),
    ],
)
def test_other_bad_arguments(args, message, tmp_path, pendulum_file) -> None:
    args = [a.format(src=pendulum_file, tmp=tmp_path) for a in args]
    assert_user_error(run(*args), message)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------- real processes
@pytest.mark.slow
def test_alm_dataset_info_in_a_subprocess(tmp_path: Path, pendulum_file: Path) -> None:
    alm_script = "alm"  # the installed console script, found on PATH
    env = {**os.environ}
    ok = subprocess.run(
        [alm_script, "dataset", "info", str(pendulum_file), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["steps"] == 200
    bad = subprocess.run(
        [alm_script, "dataset", "info", str(tmp_path / "missing.hdf5")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: no such file: {tmp_path / 'missing.hdf5'}"
    assert bad.stdout == ""


# ------------------------------------------------------- formats, ids, hints
def test_format_choices_come_from_the_registry() -> None:
    from alm_offline.datasets.formats import FORMATS
    from cli import dataset

    for name in ("convert", "collect"):
        (param,) = [p for p in dataset.commands[name].params if p.name == "fmt"]
        assert tuple(param.type.choices) == tuple(FORMATS)


@pytest.mark.parametrize(
    ("dst", "fragment"),
    [
        ("a//b/c-v0", "'a//b/c-v0' is not a Minari dataset id"),
        ("my data/x-v0", "'my data/x-v0' is not a Minari dataset id"),
        ("ns/x-v0 ", "is not a Minari dataset id"),
        ("plainname", "'plainname' is not a Minari dataset id"),
    ],
)
def test_destination_that_is_no_id_nor_clear_path_is_refused(
    dst, fragment, tmp_path, pendulum_file, minari_store, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_user_error(run("convert", pendulum_file, dst), fragment)
    out = ["collect", "--env", "InvertedPendulum-v5", "--steps", "5", "--out", dst]
    assert_user_error(run(*out), fragment)
    assert list(tmp_path.iterdir()) == [] and list(minari_store.iterdir()) == []


def test_commands_without_download_name_one_that_has_it(tmp_path, monkeypatch) -> None:
    from cli import alm

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(alm, ["train-offline", "--dataset", "mujoco/no/here-v0"])
    assert_user_error(result, "get it first with `alm dataset info mujoco/no/here-v0 --download`")
    assert "get it with --download" not in result.output
    assert list(tmp_path.iterdir()) == []
    # the dataset commands do have --download
    result = run("convert", "mujoco/no/here-v0", tmp_path / "x.h5")
    assert_user_error(result, "get it with --download or `minari download mujoco/no/here-v0`")


def test_collect_makes_its_env_once_and_collects_the_same(tmp_path, monkeypatch) -> None:
    import gymnasium

    from alm_offline.datasets import collect_dataset
    from alm_offline.datasets.action_box import env_spaces

    env_spaces.cache_clear()
    made = []
    real_make = gymnasium.make
    monkeypatch.setattr(gymnasium, "make", lambda *a, **k: made.append(a[0]) or real_make(*a, **k))
    collect_dataset(tmp_path / "a.hdf5", "Hopper-v5", steps=60, noise=0.2, seed=4)
    assert made == ["Hopper-v5", "Hopper-v5"]  # the collection's env, and its raw spaces once
    monkeypatch.setattr(gymnasium, "make", real_make)
    again = collect("Hopper-v5", random_policy(3, seed=4), steps=60, seed=4, noise=0.2)
    write_hdf5(again, tmp_path / "b.hdf5")
    with h5py.File(tmp_path / "a.hdf5") as a, h5py.File(tmp_path / "b.hdf5") as b:
        for name in ("observations", "actions", "rewards", "terminals", "timeouts"):
            assert np.array_equal(a[name][()], b[name][()]), name
        assert np.array_equal(a["metadata/episode_seeds"][()], b["metadata/episode_seeds"][()])


def test_readme_formats_table_matches_the_registry() -> None:
    from alm_offline.datasets.formats import FORMATS

    readme = (Path(__file__).resolve().parents[1] / "datasets" / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    table = {row.split("|")[1].strip().strip("`"): row.split("|")[2].strip() for row in rows}
    formats = {name: table.get(name) for name in FORMATS}
    assert formats == {name: fmt.detect_rule for name, fmt in FORMATS.items()}
