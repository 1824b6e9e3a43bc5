"""Dataset formats as one table: ``FORMATS`` maps each format's name to how it is read and
written.

A ``DatasetFormat`` says which sources it reads (``detect``), reads one (``read``), says
where a destination goes (``locate``), refuses a destination it cannot be written to before
anything is read or written (``check_destination``) and writes (``write``). ``convert``
dispatches through this table alone, and the command line's ``--format`` choices are its
keys. A source is read by the first format, in the table's order, whose ``detect`` accepts
it; a destination is written in the format whose ``suffixes`` it ends with, else in
``DEFAULT_FORMAT`` (Minari, which takes any name).

Adding a format: write its reader and writer module, then add one ``DatasetFormat`` here
(and its row to the formats table of ``datasets/README.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alm_offline.runtime.envs import EnvSpec

from .episodes import EpisodeDataset
from .hdf5 import HDF5_SUFFIXES, read_hdf5, write_hdf5
from .minari_io import (
    is_minari_id,
    minari_id_for,
    read_minari_folder,
    read_minari_id,
    store_path,
    write_minari,
)

PATH_PREFIXES = ("./", "../", "/", "~")


@dataclass(frozen=True)
class DatasetFormat:
    """One on-disk format and the functions that read and write it.

    ``read(spec, download, env)``: ``download`` is None when the caller has no
    ``--download`` option (the hint for a missing Minari id then names a command that has
    one); ``env`` is the env given with ``--env``, if any. ``write(dataset, path,
    overwrite)`` returns where it wrote, in words.
    """

    name: str
    detect_rule: str  # ``detect`` in words (the README's table)
    suffixes: tuple[str, ...]  # lower-case destination suffixes that choose this format
    detect: Callable[[str | Path], bool]  # True when this format reads the source spec
    read: Callable[[str | Path, bool | None, EnvSpec | None], EpisodeDataset]
    locate: Callable[[str | Path], Path]  # destination spec -> the path written
    check_destination: Callable[[Path], None]  # DatasetError for a path it cannot write
    write: Callable[[EpisodeDataset, Path, bool], str]


# ------------------------------------------------------------------------- D4RL HDF5
def _hdf5_detect(spec: str | Path) -> bool:
    path = Path(spec).expanduser()
    return path.is_file() or path.suffix.lower() in HDF5_SUFFIXES


def _hdf5_read(spec: str | Path, download: bool | None, env: EnvSpec | None) -> EpisodeDataset:
    return read_hdf5(Path(spec).expanduser(), env.max_episode_steps if env is not None else None)


def _hdf5_write(dataset: EpisodeDataset, path: Path, overwrite: bool) -> str:
    return str(write_hdf5(dataset, path, overwrite=overwrite))


# --------------------------------------------------------------------------- Minari
def _minari_detect(spec: str | Path) -> bool:
    return Path(spec).expanduser().is_dir() or is_minari_id(str(spec))


def _minari_read(spec: str | Path, download: bool | None, env: EnvSpec | None) -> EpisodeDataset:
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return read_minari_folder(folder)
    return read_minari_id(str(spec), download=download)


def _minari_locate(dst: str | Path) -> Path:
    """A path (a ``Path``, text starting with ./ ../ / ~, or an existing folder) as it is;
    anything else must be a Minari id, which goes into the local store."""
    text = str(dst)
    if isinstance(dst, Path) or text.startswith(PATH_PREFIXES) or Path(text).is_dir():
        return Path(text).expanduser()
    return store_path(text, hint="; to write a Minari folder, give a path (./NAME-v0)")


def _minari_check(path: Path) -> None:
    minari_id_for(path)


def _minari_write(dataset: EpisodeDataset, path: Path, overwrite: bool) -> str:
    dataset_id = write_minari(dataset, path, overwrite=overwrite)
    return f"{path} (Minari id {dataset_id})"


FORMATS: dict[str, DatasetFormat] = {
    fmt.name: fmt
    for fmt in (
        DatasetFormat(
            name="hdf5",
            detect_rule="an existing file, or a name ending in .hdf5/.h5",
            suffixes=HDF5_SUFFIXES,
            detect=_hdf5_detect,
            read=_hdf5_read,
            locate=lambda dst: Path(str(dst)).expanduser(),
            check_destination=lambda path: None,
            write=_hdf5_write,
        ),
        DatasetFormat(
            name="minari",
            detect_rule="an existing folder, or a Minari id (NAMESPACE/NAME-vN or NAME-vN)",
            suffixes=(),
            detect=_minari_detect,
            read=_minari_read,
            locate=_minari_locate,
            check_destination=_minari_check,
            write=_minari_write,
        ),
    )
}
DEFAULT_FORMAT = "minari"
INFERRED = (
    ", ".join(
        f"{fmt.name} for a {'/'.join(fmt.suffixes)} destination"
        for fmt in FORMATS.values()
        if fmt.suffixes
    )
    + f", else {DEFAULT_FORMAT}"
)  # the format ``infer_format`` picks, in words
