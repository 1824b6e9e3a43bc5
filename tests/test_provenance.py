"""A result names the code that made it: every run's summary.json carries the checkout it
was imported from and that checkout's commit (``+dirty`` when tracked files differ), so a
grid's seed file names the code that trained the seed, not only the grid's own checkout."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from conftest import train_tiny_run

from alm_offline.runtime.provenance import code_commit, code_provenance, code_root

REPO = Path(__file__).resolve().parents[1]


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_commit_is_named_and_dirty_when_tracked_files_differ(tmp_path):
    assert code_commit(tmp_path) == "unknown"  # not a checkout
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "a.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert code_commit(tmp_path) == head and re.fullmatch(r"[0-9a-f]{40}", head)
    (tmp_path / "untracked.py").write_text("")
    assert code_commit(tmp_path) == head  # untracked files are not the code that ran
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_commit(tmp_path) == head + "+dirty"


def test_a_runs_summary_names_the_checkout_and_commit_that_trained_it(tmp_path):
    assert code_root() == REPO  # this checkout's package is the one under test
    run_dir = train_tiny_run(tmp_path / "run")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["code"] == code_provenance() == {"root": str(REPO), "commit": code_commit(REPO)}
    assert summary["code"]["commit"].split("+")[0] == git(REPO, "rev-parse", "HEAD")
