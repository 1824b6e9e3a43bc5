"""Size checks made before reading: a small crafted file must not ask for gigabytes.

An HDF5 dataset declares its shape; its bytes on disk (``get_storage_size``) bound what it
can really hold. gzip cannot compress better than about 1000:1, so a dataset declaring more
than ``MAX_COMPRESSION`` times its stored bytes (beyond a small allowance) is refused, and so
are arrays that together would not fit in the memory available.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import h5py

from .errors import DatasetError

MAX_COMPRESSION = 1100  # gzip's best ratio is about 1032:1
SMALL_ARRAY_BYTES = 16 * 2**20  # any array up to this size may be read, whatever it stores
MEMORY_HEADROOM = 3  # reading makes a few copies (float32 casts, episode layout)


def check_sizes(datasets: Iterable[h5py.Dataset], path: Path | str) -> None:
    """``DatasetError`` when the declared sizes of ``datasets`` cannot be real or cannot fit."""
    total = 0
    for dataset in datasets:
        declared = int(dataset.size) * dataset.dtype.itemsize
        stored = int(dataset.id.get_storage_size())
        if declared > max(SMALL_ARRAY_BYTES, MAX_COMPRESSION * stored):
            raise DatasetError(
                f"{path}: {dataset.name} declares shape {dataset.shape} ({_size(declared)}) but "
                f"the file stores only {_size(stored)} for it; refusing to read it"
            )
        total += declared
    available = available_memory()
    if available is not None and total * MEMORY_HEADROOM > available:
        raise DatasetError(
            f"{path}: its arrays need {_size(total)} (about {MEMORY_HEADROOM}x that to read), "
            f"more than the {_size(available)} of memory available"
        )


def refuse_external_links(group: h5py.Group, path: Path | str) -> None:
    """``DatasetError`` when ``group`` (recursively) reaches into another file, through an
    external link or a virtual dataset: reading it would read a file of the author's choice."""
    for name in group:
        where = f"{group.name.rstrip('/')}/{name}"
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise DatasetError(
                f"{path}: {where} is an external link to {link.filename}; "
                "datasets with external links are refused"
            )
        if not isinstance(link, h5py.HardLink):
            continue
        item = group.get(name)
        if isinstance(item, h5py.Dataset) and item.is_virtual:
            raise DatasetError(f"{path}: {where} is a virtual dataset; such datasets are refused")
        if isinstance(item, h5py.Group):
            refuse_external_links(item, path)


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), else None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
