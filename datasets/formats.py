"""Dataset formats as one table: ``FORMATS`` maps each format's name to how it is read and
written.

A ``DatasetFormat`` says which sources it reads (``detect``), where a source lives on disk
(``source_path``), reads one (``read``), says where a destination goes (``locate``), refuses
a destination it cannot be written to before anything is read or written
(``check_destination``), writes (``write``), and lists what it holds locally for ``alm
dataset list`` (``listing``, ``listing_lines``). ``convert`` dispatches through this table
alone, and the command line's ``--format`` choices are its
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
from .hdf5 import HDF5_SUFFIXES, hdf5_overview, read_hdf5, write_hdf5
from .minari_io import (
    is_minari_id,
    list_minari_store,
    minari_id_for,
    minari_store,
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
    overwrite)`` returns where it wrote, in words. ``listing(folder)`` gives the format's
    entries of ``alm dataset list --json`` (``folder``: the folder asked about, or None);
    ``listing_lines`` those entries as text.
    """

    name: str
    detect_rule: str  # ``detect`` in words (the README's table)
    suffixes: tuple[str, ...]  # lower-case destination suffixes that choose this format
    detect: Callable[[str | Path], bool]  # True when this format reads the source spec
    read: Callable[[str | Path, bool | None, EnvSpec | None], EpisodeDataset]
    locate: Callable[[str | Path], Path]  # destination spec -> the path written
    check_destination: Callable[[Path], None]  # DatasetError for a path it cannot write
    write: Callable[[EpisodeDataset, Path, bool], str]
    source_path: Callable[[str | Path], Path]  # a source spec -> where it lives on disk
    listing: Callable[[Path | None], dict]
    listing_lines: Callable[[dict], list[str]]


def listing_row(name: str, row: dict, facts: str) -> str:
    """One dataset of a listing: its name and ``facts`` filled from ``row`` (or why it is
    unreadable)."""
    if "error" in row:
        return f"  {name}  unreadable: {row['error']}"
    return f"  {name}  " + facts.format(**{**row, "env": row["env_id"] or "unknown"})


# ------------------------------------------------------------------------- D4RL HDF5
def _hdf5_detect(spec: str | Path) -> bool:
    path = Path(spec).expanduser()
    return path.is_file() or path.suffix.lower() in HDF5_SUFFIXES


def _hdf5_read(spec: str | Path, download: bool | None, env: EnvSpec | None) -> EpisodeDataset:
    return read_hdf5(Path(spec).expanduser(), env.max_episode_steps if env is not None else None)


def _hdf5_write(dataset: EpisodeDataset, path: Path, overwrite: bool) -> str:
    return str(write_hdf5(dataset, path, overwrite=overwrite))


HDF5_ROW = (
    "{episodes} episodes, {transitions} transitions, obs {obs_dim}, action {action_dim}, env {env}"
)


def _hdf5_listing(folder: Path | None) -> dict:
    """The HDF5 files directly in ``folder`` (none asked: an empty list)."""
    if folder is None:
        return {"folder": None, "hdf5": []}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in HDF5_SUFFIXES)
    return {"folder": str(folder), "hdf5": [hdf5_overview(p) for p in files if p.is_file()]}


def _hdf5_lines(listing: dict) -> list[str]:
    if listing["folder"] is None:
        return []
    lines = [f"HDF5 files in {listing['folder']}: {len(listing['hdf5'])}"]
    return lines + [listing_row(row["path"], row, HDF5_ROW) for row in listing["hdf5"]]


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


def _minari_source_path(spec: str | Path) -> Path:
    """A folder as it is; a Minari id that is no folder here: its folder in the store."""
    path = Path(spec).expanduser()
    if not path.exists() and is_minari_id(str(spec)):
        return minari_store() / str(spec)
    return path


MINARI_ROW = "{episodes} episodes, {steps} steps, env {env}"


def _minari_lines(listing: dict) -> list[str]:
    lines = [f"Minari store {listing['store']}: {len(listing['minari'])} datasets"]
    return lines + [listing_row(row["id"], row, MINARI_ROW) for row in listing["minari"]]


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
            source_path=lambda spec: Path(spec).expanduser(),
            listing=_hdf5_listing,
            listing_lines=_hdf5_lines,
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
            source_path=_minari_source_path,
            listing=lambda folder: {"store": str(minari_store()), "minari": list_minari_store()},
            listing_lines=_minari_lines,
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
