"""Temporary files named by the process that writes them, and the clean-up of dead ones.

A file is written as ``.NAME.tmp-PID`` (a folder as ``.NAME.tmp-PID-XXXX``) beside its
destination, then renamed over it. A process killed before the rename leaves that
temporary behind; the next writer of the same destination removes every one whose PID is
no longer running (they are ours by name; a live process's are left alone).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alm_offline.errors import WriteError


def temporary_path(path: Path, suffix: str = "") -> Path:
    """``.NAME.tmp-PID`` beside ``path`` (``.NAME.tmp-PID.SUFFIX`` for writers that choose
    their format by the file's suffix)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


@contextmanager
def replaced_on_success(path: Path, suffix: str = "") -> Iterator[Path]:
    """The one write-to-a-temporary-then-rename: yields ``temporary_path(path, suffix)``,
    renamed over ``path`` when the block ends without an exception and removed when it
    does not (the error goes on); dead processes' temporaries of ``path`` go first."""
    path = Path(path)
    tmp = temporary_path(path, suffix)
    remove_dead_temporaries(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def temporary_prefix(path: Path) -> str:
    """The name prefix of a temporary folder for ``path``: ``.NAME.tmp-PID-``."""
    return f".{path.name}.tmp-{os.getpid()}-"


def remove_dead_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` left by processes that are gone; returns them."""
    prefix = f".{path.name}.tmp-"
    removed = []
    for item in path.parent.glob(glob.escape(prefix) + "*"):
        owner = re.match(r"\d+", item.name[len(prefix) :])
        if owner is None or _running(int(owner.group())):
            continue
        try:
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()
        except OSError:
            continue  # not ours to remove after all (e.g. a read-only folder)
        removed.append(item)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def nearest_existing(folder: Path) -> Path:
    """``folder``, or its closest ancestor that exists (absolute)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def probe_can_create(path: Path) -> None:
    """Raise the ``OSError`` that creating a file where ``path`` would go meets (a read-only
    folder), by making a temporary file in the nearest folder that exists. Unlike
    ``os.access`` this also holds for root, whose access checks ignore file modes."""
    with tempfile.TemporaryFile(dir=nearest_existing(path.parent)):
        pass


def check_output_file(path: Path, what: str = "output") -> None:
    """Fail early (``WriteError``) when ``path`` cannot be written as a file: before the
    work whose result it is starts."""
    if path.is_dir():
        raise WriteError(f"{what} '{path}' is a directory")
    try:
        probe_can_create(path)
    except OSError as exc:
        raise WriteError.of(path, exc) from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through ``.NAME.tmp-PID`` and a rename (``WriteError``)."""
    path = Path(path)
    try:
        with replaced_on_success(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise WriteError.of(path, exc) from None


def sha256_of(path: Path) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
