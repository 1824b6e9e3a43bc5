"""Atomic publication of a dataset file or folder.

Writers build the dataset inside a staging folder next to the destination (same filesystem)
and move it into place only once it is complete, so an interrupted write never leaves a
half-written dataset under the destination's name.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alm_offline.runtime.files import (
    nearest_existing,
    probe_can_create,
    remove_dead_temporaries,
    temporary_prefix,
)

from .episodes import DatasetError


def check_destination(dst: Path, overwrite: bool) -> None:
    """Raise ``DatasetError`` when ``dst`` exists and ``overwrite`` is false."""
    if (dst.exists() or dst.is_symlink()) and not overwrite:
        raise DatasetError(f"{dst} already exists (pass --overwrite to replace it)")


def write_failure(dst: Path, exc: BaseException) -> DatasetError:
    """``cannot write DST: CAUSE`` for an ``OSError`` or an HDF5 library error wrapping one
    (h5py puts the system's message inside its own: ``error message = '...'``)."""
    text = str(exc)
    found = re.search(r"error message = '([^']+)'", text)
    cause = found.group(1) if found else getattr(exc, "strerror", None)
    return DatasetError(f"cannot write {dst}: {cause or (text.strip().splitlines() or ['?'])[0]}")


def check_can_create(dst: Path) -> None:
    """``DatasetError`` when nothing can be created where ``dst`` would go (a read-only
    folder)."""
    try:
        probe_can_create(dst)
    except OSError as exc:
        raise write_failure(dst, exc) from None


def check_room(dst: Path, nbytes: int) -> None:
    """``DatasetError`` before anything is written when about ``nbytes`` will not fit: more
    than the process may write to one file (``RLIMIT_FSIZE``) or than the disk has free.
    (An HDF5 write that fails midway can leave the library unstable, so ask first.)"""
    limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if limit != resource.RLIM_INFINITY and nbytes > limit:
        raise DatasetError(
            f"cannot write {dst}: {os.strerror(errno.EFBIG)} (this process may write files "
            f"of {limit} bytes, the dataset needs about {nbytes})"
        )
    stats = os.statvfs(nearest_existing(dst.parent))
    free = stats.f_bavail * stats.f_frsize
    if nbytes > free:
        raise DatasetError(
            f"cannot write {dst}: {os.strerror(errno.ENOSPC)} ({free} bytes free, "
            f"the dataset needs about {nbytes})"
        )


@contextmanager
def staging_area(dst: Path) -> Iterator[Path]:
    """A fresh hidden folder ``.NAME.tmp-PID-XXXX`` in ``dst``'s parent (created if
    missing), removed on exit; a dead process's staging folders for ``dst`` go first."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        parent = dst.parent.absolute()  # Minari's size bookkeeping fails on relative paths
        remove_dead_temporaries(parent / dst.name)
        area = Path(tempfile.mkdtemp(prefix=temporary_prefix(dst), dir=parent))
    except OSError as exc:
        raise write_failure(dst, exc) from None
    try:
        yield area
    finally:
        shutil.rmtree(area, ignore_errors=True)


def publish(staged: Path, dst: Path, overwrite: bool) -> None:
    """Move the complete ``staged`` file or folder (inside a ``staging_area``) to ``dst``.

    A file replaces a file in one atomic ``os.replace``; when a folder is involved the old
    ``dst`` is first moved into the staging area (removed with it) and restored on failure.
    """
    check_destination(dst, overwrite)
    try:
        if dst.exists() and (dst.is_dir() or staged.is_dir()):
            aside = staged.parent / ".replaced"
            os.replace(dst, aside)
            try:
                os.replace(staged, dst)
            except OSError:
                os.replace(aside, dst)
                raise
        else:
            os.replace(staged, dst)
    except OSError as exc:
        raise DatasetError(f"cannot move the new dataset to {dst}: {exc.strerror}") from None
