"""Hostile and odd dataset files: each is refused with one `error:` line, never a traceback,
a memory blow-up or a silently wrong read; a bad file never hides the good ones in a listing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import assert_one_line_error, train_tiny_run

from alm_offline.datasets import collect, random_policy, write_hdf5, write_minari
from cli import alm


@pytest.fixture(scope="module")
def pendulum_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = collect("InvertedPendulum-v5", random_policy(1, seed=0), steps=200, seed=0)
    return write_hdf5(data, tmp_path_factory.mktemp("data") / "pendulum.hdf5")


def alm_cli(*args: str | Path) -> Result:
    return CliRunner().invoke(alm, [str(a) for a in args])


# ------------------------------------------------------------------ HDF5 files
def _flag(value: float) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        with h5py.File(path, "a") as file:
            terminals = file["terminals"][()].astype(np.float32)
            del file["terminals"]
            terminals[5] = value
            file["terminals"] = terminals

    return corrupt


def _huge_declared(path: Path) -> None:
    """Every array declares 10^9 rows of gzip chunks the file never stores (a 10 KB file)."""
    with h5py.File(path, "w") as file:
        for name, width in (("observations", 4), ("actions", 1), ("next_observations", 4)):
            file.create_dataset(
                name, shape=(10**9, width), dtype="f4", chunks=(4096, width), compression="gzip"
            )
        for name in ("rewards", "terminals", "timeouts"):
            file.create_dataset(
                name, shape=(10**9,), dtype="f4", chunks=(4096,), compression="gzip"
            )
        file["observations"][:10] = 1.0
        file.create_group("metadata").attrs["env_id"] = "InvertedPendulum-v5"
    assert path.stat().st_size < 100_000


def _soft_link_loop(path: Path) -> None:
    with h5py.File(path, "a") as file:
        del file["observations"], file["rewards"]
        file["observations"] = h5py.SoftLink("/rewards")
        file["rewards"] = h5py.SoftLink("/observations")


def _scores(low: object, high: object) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        with h5py.File(path, "a") as file:
            file["metadata"].attrs["ref_min_score"] = low
            file["metadata"].attrs["ref_max_score"] = high

    return corrupt


@pytest.mark.parametrize(
    ("corrupt", "fragment"),
    [
        (_flag(0.5), "terminals hold 1 values that are not 0 or 1 (for example 0.5)"),
        (_flag(-0.5), "terminals hold 1 values that are not 0 or 1 (for example -0.5)"),
        (_flag(np.nan), "terminals hold 1 values that are not 0 or 1 (for example nan)"),
        (_huge_declared, "observations declares shape (1000000000, 4)"),
        (_soft_link_loop, "too many links"),
        (_scores(10.0, 5.0), "the reference max 5.0 must exceed the min 10.0"),
        (_scores(np.nan, 5.0), "the reference min score nan is not a number"),
        (_scores("low", "high"), "metadata ref_min_score is not a number: 'low'"),
    ],
    ids=["flag-half", "flag-negative", "flag-nan", "huge", "link-loop", "min>max", "nan", "str"],
)
def test_bad_hdf5_files_are_refused(corrupt, fragment, tmp_path, pendulum_file) -> None:
    path = tmp_path / "bad.hdf5"
    shutil.copy(pendulum_file, path)
    corrupt(path)
    assert_one_line_error(alm_cli("dataset", "info", path), fragment)
    run_dir = tmp_path / "run"
    assert_one_line_error(
        alm_cli("train-offline", "--dataset", path, f"run_dir={run_dir}", "--quiet"), fragment
    )
    assert not run_dir.exists()


def test_list_reports_a_bad_file_on_its_own_row(tmp_path, pendulum_file) -> None:
    shutil.copy(pendulum_file, tmp_path / "a-good.hdf5")
    shutil.copy(pendulum_file, tmp_path / "b-loop.hdf5")
    _soft_link_loop(tmp_path / "b-loop.hdf5")
    shutil.copy(pendulum_file, tmp_path / "c-flags.hdf5")
    _flag(np.nan)(tmp_path / "c-flags.hdf5")
    shutil.copy(pendulum_file, tmp_path / "d-huge.hdf5")
    _huge_declared(tmp_path / "d-huge.hdf5")
    (tmp_path / "e-garbage.hdf5").write_bytes(b"not hdf5 at all")
    result = alm_cli("dataset", "list", tmp_path)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert "200 transitions" in rows[str(tmp_path / "a-good.hdf5")]
    for bad in ("b-loop", "c-flags", "d-huge", "e-garbage"):
        assert "unreadable:" in rows[str(tmp_path / f"{bad}.hdf5")], bad


# ---------------------------------------------------------------- Minari files
@pytest.fixture
def minari_folder(tmp_path: Path, pendulum_file: Path) -> Path:
    from alm_offline.datasets import load_dataset

    folder = tmp_path / "pendulum-v0"
    write_minari(load_dataset(pendulum_file), folder)
    return folder


def _edit_metadata(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def corrupt(folder: Path) -> None:
        path = folder / "data" / "metadata.json"
        metadata = json.loads(path.read_text())
        path.write_text(json.dumps(change(metadata)))

    return corrupt


def _set(**values: object) -> Callable[[Path], None]:
    return _edit_metadata(lambda metadata: {**metadata, **values})


@pytest.mark.parametrize(
    ("corrupt", "fragment"),
    [
        (_set(total_episodes=1e12), "metadata total_episodes must be a whole number"),
        (_set(total_episodes=10**12), "declares 1000000000000 episodes, its data file holds"),
        (_edit_metadata(lambda metadata: [metadata]), "is a list, not an object"),
        (_set(ref_min_score="0", ref_max_score="100"), "the reference min score '0' is not a"),
        (_set(ref_min_score=10, ref_max_score=5), "the reference max 5 must exceed the min 10"),
        (_set(alm_metadata=["x"]), "alm_metadata must be an object"),
        (_set(action_space=7), "metadata action_space must be a string"),
    ],
    ids=["float-count", "huge-count", "list", "str-scores", "min>max", "alm-meta", "space"],
)
def test_bad_minari_folders_are_refused(corrupt, fragment, minari_folder: Path) -> None:
    corrupt(minari_folder)
    assert_one_line_error(alm_cli("dataset", "info", minari_folder), fragment)


def test_minari_store_listing_survives_a_broken_dataset(minari_store, pendulum_file) -> None:
    from alm_offline.datasets import load_dataset

    data = load_dataset(pendulum_file)
    write_minari(data, minari_store / "ok" / "good-v0")
    write_minari(data, minari_store / "ok" / "broken-v0")
    (minari_store / "ok" / "broken-v0" / "data" / "metadata.json").write_text("{not json")
    result = alm_cli("dataset", "list")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert "200 steps" in rows["ok/good-v0"]
    assert "unreadable:" in rows["ok/broken-v0"]


# ------------------------------------------------------------------ rendering
@pytest.mark.slow
def test_video_of_an_env_whose_renderer_is_missing_is_one_error(tmp_path, monkeypatch) -> None:
    run_dir = train_tiny_run(tmp_path / "run", "env=Pendulum-v1", "steps=150", "eval.every=150")
    monkeypatch.setitem(sys.modules, "pygame", None)  # as when pygame is not installed
    video = tmp_path / "pendulum.mp4"
    result = alm_cli("eval", run_dir, "--episodes", "1", "--video", video)
    assert_one_line_error(result, "rendering Pendulum-v1 needs a package that is not installed")
    assert "pip install" in result.stderr
    assert not video.exists()


@pytest.mark.slow
def test_a_library_warning_during_a_dataset_command_is_shown_not_looped(tmp_path) -> None:
    """gymnasium warns that -v4 is out of date; showing that warning used to append it to
    the list being shown, for ever (memory grew until the kernel killed the command)."""
    out = tmp_path / "v4.hdf5"
    result = subprocess.run(
        [sys.executable, "-m", "cli", "dataset", "collect", "--env", "InvertedPendulum-v4",
         "--steps", "50", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 1 <= result.stderr.count("out of date") <= 3, result.stderr  # once per env made
    with h5py.File(out, "r") as file:
        assert len(file["rewards"]) == 50


# ------------------------------------------------------------- the Minari store
@pytest.mark.parametrize("store", ["under-a-file", ""])
def test_an_unusable_minari_store_is_one_error_line(store, tmp_path, monkeypatch) -> None:
    """Minari's own store lookup creates the folder (a traceback when it cannot); ours
    only names it, and writers report what they cannot create."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(blocker / "store") if store else "")
    fragment = "cannot write" if store else "MINARI_DATASETS_PATH is set but empty"
    out = ["dataset", "collect", "--env", "InvertedPendulum-v5", "--steps", "5", "--out", "ns/b-v0"]
    assert_one_line_error(alm_cli(*out), fragment)
    missing = alm_cli("dataset", "info", "ns/none-v0")
    assert_one_line_error(missing, "not in the local store" if store else fragment)
    listing = alm_cli("dataset", "list")
    assert listing.exit_code == (0 if store else 2), listing.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["dataset", "convert", "BUNDLED", ""], "the destination is empty"),
        (["dataset", "convert", "", "out.hdf5"], "the dataset is empty"),
        (["dataset", "convert", " ", "out.hdf5"], "the dataset is empty"),
        (["dataset", "info", ""], "the dataset is empty"),
        (
            ["dataset", "collect", "--env", "InvertedPendulum-v5", "--steps", "5", "--out", ""],
            "the destination is empty",
        ),
    ],
)
def test_an_empty_dataset_name_is_not_the_current_folder(tmp_path, monkeypatch, args, fragment):
    """``Path("")`` is ``.``: an empty name once read the current folder as a dataset (and
    refused an empty destination as '. already exists')."""
    from click.testing import CliRunner

    from alm_offline.datasets import bundled_dataset_path
    from cli import alm

    monkeypatch.chdir(tmp_path)
    args = [str(bundled_dataset_path()) if a == "BUNDLED" else a for a in args]
    result = CliRunner().invoke(alm, args)
    assert_one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []
