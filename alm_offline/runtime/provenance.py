"""Which code produced a result: the checkout (or installed tree) this package was
imported from, and its git commit, read once per result by ``git`` (no torch)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_root() -> Path:
    """The folder holding the ``alm_offline`` package that is running (a checkout's root,
    or site-packages for an installed wheel)."""
    return Path(__file__).resolve().parents[2]


def code_commit(root: Path) -> str:
    """The commit of the code in ``root`` (``+dirty`` when tracked files differ from it;
    ``unknown`` outside a git checkout)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        except OSError:  # no git
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "HEAD") or "unknown"
    return head + (
        "+dirty"
        if head != "unknown" and git("status", "--porcelain", "--untracked-files=no")
        else ""
    )


def code_provenance() -> dict[str, str]:
    """``{"root": ..., "commit": ...}`` of the running code, as a run's summary keeps it."""
    root = code_root()
    return {"root": str(root), "commit": code_commit(root)}
