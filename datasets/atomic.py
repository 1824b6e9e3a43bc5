"""Atomic publication of a dataset file or folder.

Writers build the dataset inside a staging folder next to the destination (same filesystem)
and move it into place only once it is complete, so an interrupted write never leaves a
half-written dataset under the destination's name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .episodes import DatasetError


def check_destination(dst: Path, overwrite: bool) -> None:
    """Raise ``DatasetError`` when ``dst`` exists and ``overwrite`` is false."""
    if (dst.exists() or dst.is_symlink()) and not overwrite:
        raise DatasetError(f"{dst} already exists (pass --overwrite to replace it)")


@contextmanager
def staging_area(dst: Path) -> Iterator[Path]:
    """A fresh hidden folder in ``dst``'s parent (created if missing), removed on exit."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        parent = dst.parent.absolute()  # Minari's size bookkeeping fails on relative paths
        area = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=parent))
    except OSError as exc:
        raise DatasetError(f"cannot write next to {dst}: {exc.strerror}") from None
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
