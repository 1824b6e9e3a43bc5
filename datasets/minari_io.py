"""Minari datasets: read by id from the local store or from a dataset folder; write anywhere.

A Minari dataset folder holds ``data/metadata.json`` and ``data/main_data.hdf5``; the local
store is ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``) where the dataset
``namespace/name-v0`` lives in the folder ``namespace/name-v0``. Ids need a version suffix.

Writing goes through ``minari.create_dataset_from_buffers`` with whole-episode
``EpisodeBuffer``s (no jax needed, each with its reset seed when known) into a staging store
next to the destination, then the finished folder is renamed into place. Its id is the
folder's path relative to the store when the destination lies in the store, else the
folder's name, so the folder must be named like ``NAME-v0``. Spaces are recorded as float32
Boxes: actions are stored in the env's own units and the action space declared is the env's
real box (so ``recover_environment()`` steps with the recorded actions as they are);
``alm_metadata`` marks this with ``action_units: "env"``.

Reading takes actions in the units of the action space the dataset declares; datasets this
project wrote before it stored env units declared ``Box(-1, 1)`` and so still read right.
An episode that ends with neither flag is held as truncated. Before Minari opens a folder,
its ``metadata.json`` is checked (an object, whole episode and step counts that the data file
really holds, numeric reference scores, a dict ``alm_metadata``) and the data file's
declared sizes are compared with what it stores (see ``safety``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import h5py
import minari
import numpy as np
from gymnasium.envs.registration import EnvSpec
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id

import alm_offline.runtime.envs  # noqa: F401  (registers T-Ant-v5 / T-Humanoid-v5 for gym.spec)

from .action_box import ActionBox, env_spaces
from .atomic import check_destination, check_room, publish, staging_area, write_failure
from .episodes import DatasetError, EpisodeDataset, check_ref_scores
from .safety import check_sizes, refuse_external_links

_OPEN_ERRORS = (ValueError, KeyError, AssertionError, OSError, TypeError, RuntimeError)
_AUTHOR = "alm-offline"
_DESCRIPTION = "Written by alm-offline; actions in the env's own units."
_EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")


def is_minari_id(text: str) -> bool:
    """True when ``text`` parses as a Minari id ``(namespace/)name-vN``."""
    try:
        parse_dataset_id(text)
    except (ValueError, TypeError):  # TypeError: no version suffix
        return False
    return True


ID_RULE = (
    "NAME-vN or NAMESPACE/NAME-vN, of letters, digits, '_' and '-' with single '/' between "
    "parts, the namespace 2 characters or more"
)


def check_minari_id(text: str, hint: str = "") -> str:
    """``text`` when it is a Minari id naming a folder inside the store (Minari's own form,
    and no empty, ``.`` or ``..`` part), else ``DatasetError`` (``hint`` appended)."""
    parts = text.split("/")
    if not is_minari_id(text) or any(part in ("", ".", "..") for part in parts):
        raise DatasetError(f"{text!r} is not a Minari dataset id ({ID_RULE}){hint}")
    return text


def store_path(dataset_id: str, hint: str = "") -> Path:
    """The folder of ``dataset_id`` in the local store, once the id is checked (so that it
    always lies inside the store)."""
    return minari_store() / check_minari_id(dataset_id, hint)


def minari_store() -> Path:
    """The local Minari store (``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``), found
    as Minari finds it but not created (Minari's own lookup makes the folder, and fails
    with a traceback when it cannot); a writer creates it when it publishes a dataset."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    if root is None:
        return Path.home() / ".minari" / "datasets"
    if not root.strip():
        raise DatasetError("MINARI_DATASETS_PATH is set but empty; unset it or name a folder")
    return Path(root).expanduser()


def minari_data_path(folder: Path) -> Path | None:
    """The ``data`` folder of a Minari dataset folder (or the folder itself), else None."""
    for candidate in (folder / "data", folder):
        if (candidate / "metadata.json").is_file():
            return candidate
    return None


def read_minari_folder(folder: str | Path) -> EpisodeDataset:
    """Read the Minari dataset stored in ``folder`` (or in ``folder/data``)."""
    folder = Path(folder)
    data_path = minari_data_path(folder)
    if data_path is None:
        raise DatasetError(f"{folder} is not a Minari dataset folder (no data/metadata.json)")
    return _read(data_path, str(folder))


def read_minari_id(dataset_id: str, download: bool | None = None) -> EpisodeDataset:
    """Read ``dataset_id`` from the local store, downloading it first when ``download``.

    A missing id's error names ``--download`` when the caller offers that option
    (``download`` False), else (None) a command that has it."""
    folder = minari_store() / dataset_id
    if minari_data_path(folder) is None:
        if not download:
            how = (
                "with --download"
                if download is False
                else "first with " + (f"`alm dataset info {dataset_id} --download`")
            )
            raise DatasetError(
                f"Minari dataset {dataset_id} is not in the local store {minari_store()}; "
                f"get it {how} or `minari download {dataset_id}`"
            )
        try:
            minari.download_dataset(dataset_id)
        except Exception as exc:  # network, remote and version errors alike
            raise DatasetError(f"could not download {dataset_id}: {exc}") from None
    return _read(folder / "data", dataset_id)


def write_minari(dataset: EpisodeDataset, dst: str | Path, overwrite: bool = False) -> str:
    """Validate ``dataset`` and write it as the Minari folder ``dst`` atomically; returns its id."""
    dst = Path(dst)
    check_destination(dst, overwrite)
    dataset_id = minari_id_for(dst)
    dataset.validate()
    box = dataset.env_unit_box()
    env_spec = None
    if dataset.env_id is not None:
        if dataset.env_id not in gym.registry:
            raise DatasetError(
                f"env id {dataset.env_id!r} is not a registered gymnasium env; name one with --env"
            )
        env_spec = gym.spec(dataset.env_id)
    check_room(dst, dataset.nbytes)
    with staging_area(dst) as area, _store_at(area), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\.")
        try:
            _create(dataset, dataset_id, env_spec, box)
        except (OSError, RuntimeError) as exc:
            raise write_failure(dst, exc) from None
        publish(area / dataset_id, dst, overwrite)
    return dataset_id


def _create(
    dataset: EpisodeDataset, dataset_id: str, env_spec: EnvSpec | None, box: ActionBox
) -> None:
    """Create ``dataset_id`` in the current Minari store (see ``_store_at``), actions in
    the units of ``box``."""
    actions = dataset.actions_in(box)
    starts = dataset.step_starts()
    seeds = dataset.episode_seeds
    buffers = [
        _buffer(
            {**episode, "actions": actions[start : start + len(episode["rewards"])]},
            None if seeds is None or seeds[i] < 0 else int(seeds[i]),
        )
        for i, (episode, start) in enumerate(zip(dataset.iter_episodes(), starts, strict=True))
    ]
    created = minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env=env_spec,
        eval_env=env_spec,
        algorithm_name=str(dataset.metadata.get("algorithm", "unknown")),
        author=_AUTHOR,
        description=str(dataset.metadata.get("description", _DESCRIPTION)),
        observation_space=_observation_space(dataset),
        action_space=box.as_space(),
    )
    scores = {"ref_min_score": dataset.ref_min_score, "ref_max_score": dataset.ref_max_score}
    extra = {k: v for k, v in dataset.metadata.items() if isinstance(v, (str, int, float, bool))}
    extra["action_units"] = "env"
    if dataset.open_end:
        extra["open_end"] = True
    created.storage.update_metadata(
        {**{k: v for k, v in scores.items() if v is not None}, "alm_metadata": extra}
    )


def minari_id_for(dst: Path) -> str:
    """The id a dataset written to folder ``dst`` gets (see the module docstring)."""
    try:
        dataset_id = dst.resolve().relative_to(minari_store().resolve()).as_posix()
    except ValueError:
        dataset_id = dst.name
    if not is_minari_id(dataset_id):
        raise DatasetError(
            f"a Minari dataset folder must be named like NAME-v0 (e.g. out/halfcheetah-random-v0),"
            f" not {dataset_id!r}"
        )
    return dataset_id


def list_minari_store() -> list[dict]:
    """Datasets of the local store: id, episodes, steps and env id of each; a dataset that
    cannot be read gets an ``error`` instead (one bad dataset never hides the others)."""
    rows = []
    for data_path in _store_data_folders(minari_store()):
        dataset_id = data_path.parent.relative_to(minari_store()).as_posix()
        try:
            metadata = read_checked_metadata(data_path, dataset_id)
        except DatasetError as exc:
            rows.append({"id": dataset_id, "error": str(exc)})
            continue
        rows.append(
            {
                "id": dataset_id,
                "episodes": metadata.get("total_episodes"),
                "steps": metadata.get("total_steps"),
                "env_id": _env_id(metadata),
            }
        )
    return rows


def _store_data_folders(store: Path) -> list[Path]:
    """Every ``data`` folder of a dataset in ``store`` (hidden folders skipped), sorted."""
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        if (folder / "data").is_dir():
            found.append(folder / "data")
            return
        if depth == 0:
            return
        try:
            children = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            if child.is_dir():
                walk(child, depth - 1)

    if store.is_dir():
        walk(store, depth=4)
    return [p for p in found if p.parent != store]


def read_checked_metadata(data_path: Path, source: str) -> dict:
    """``metadata.json`` of ``data_path``, checked so that Minari can open it safely."""
    try:
        with open(data_path / "metadata.json", encoding="utf-8") as file:
            metadata = json.load(file)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"cannot read the metadata.json of {source}: {exc}") from None
    if not isinstance(metadata, dict):
        raise DatasetError(
            f"the metadata.json of {source} is a {type(metadata).__name__}, not an object"
        )
    for key in ("total_episodes", "total_steps"):
        value = metadata.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DatasetError(f"{source}: metadata {key} must be a whole number, got {value!r}")
    if metadata.get("data_format", "hdf5") != "hdf5":
        raise DatasetError(
            f"{source} is stored as {metadata.get('data_format')!r}; only Minari's hdf5 "
            "storage is read here"
        )
    for key in ("observation_space", "action_space", "env_spec", "eval_env_spec"):
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            raise DatasetError(f"{source}: metadata {key} must be a string")
    check_ref_scores(
        metadata.get("ref_min_score"), metadata.get("ref_max_score"), f"{source} metadata"
    )
    if not isinstance(metadata.get("alm_metadata", {}), dict):
        raise DatasetError(f"{source}: metadata alm_metadata must be an object")
    return metadata


def _check_data_file(data_path: Path, metadata: dict, source: str) -> None:
    """The data file holds every episode ``metadata`` declares, in sizes it can store."""
    total = metadata["total_episodes"]
    if total == 0:
        raise DatasetError(f"{source} holds no episodes")
    path = data_path / "main_data.hdf5"
    try:
        with h5py.File(path, "r") as file:
            refuse_external_links(file, source)
            if len(file) < total:
                raise DatasetError(
                    f"{source}: metadata declares {total} episodes, its data file holds {len(file)}"
                )
            arrays = []
            for i in range(total):
                group = file.get(f"episode_{i}")
                if not isinstance(group, h5py.Group):
                    raise DatasetError(f"{source}: its data file lacks episode_{i}")
                for key in _EPISODE_KEYS:
                    array = group.get(key)
                    if not isinstance(array, h5py.Dataset):
                        raise DatasetError(f"{source}: episode_{i} lacks a {key} array")
                    arrays.append(array)
            check_sizes(arrays, source)
    except DatasetError:
        raise
    except _OPEN_ERRORS as exc:
        raise DatasetError(f"cannot read Minari dataset {source}: {exc}") from None


# ------------------------------------------------------------------------ helpers
def _read(data_path: Path, source: str) -> EpisodeDataset:
    metadata = read_checked_metadata(data_path, source)
    _check_data_file(data_path, metadata, source)
    try:
        dataset = minari.MinariDataset(data_path)
        box = gym.spaces.Box
        if not (
            isinstance(dataset.observation_space, box) and isinstance(dataset.action_space, box)
        ):
            raise DatasetError(f"{source} does not have flat Box observations and actions")
        action_box = ActionBox.from_space(dataset.action_space, source)
        episodes = [
            {key: getattr(ep, key) for key in _EPISODE_KEYS} for ep in dataset.iterate_episodes()
        ]
        seeds = [
            meta.get("seed") for meta in dataset.storage.get_episode_metadata(range(len(episodes)))
        ]
        metadata = dataset.storage.metadata
    except DatasetError:
        raise
    except _OPEN_ERRORS as exc:
        raise DatasetError(f"cannot read Minari dataset {source}: {exc}") from None
    alm_metadata = dict(metadata.get("alm_metadata", {}))
    alm_metadata.pop("action_units", None)
    open_end = bool(alm_metadata.pop("open_end", False))
    for episode in episodes:
        if len(episode["rewards"]) == 0:
            raise DatasetError(f"{source} holds an episode with no steps")
        ends_flagged = bool(episode["terminations"][-1]) or bool(episode["truncations"][-1])
        if not ends_flagged:  # an episode that stopped mid-way is held as truncated
            episode["truncations"] = np.array(episode["truncations"], dtype=bool)
            episode["truncations"][-1] = True
            open_end = open_end or episode is episodes[-1]
    own = {
        "dataset_id": dataset.id,
        "algorithm": metadata.get("algorithm_name"),
        "description": metadata.get("description"),
        "author": ", ".join(sorted(metadata.get("author", ()))) or None,
        "source": source,
    }
    return EpisodeDataset.from_episodes(
        episodes,
        env_id=_env_id(metadata),
        ref_min_score=metadata.get("ref_min_score"),
        ref_max_score=metadata.get("ref_max_score"),
        metadata={**alm_metadata, **{k: v for k, v in own.items() if v}},
        action_box=action_box,
        episode_seeds=_seed_array(seeds),
        open_end=open_end,
    )


def _observation_space(dataset: EpisodeDataset) -> gym.spaces.Box:
    """The env's own observation space when gymnasium knows the env (what Minari's own
    collector declares), else an unbounded float32 box of the data's size."""
    if dataset.env_id is not None and dataset.env_id in gym.registry:
        space = env_spaces(dataset.env_id)[0]
        if isinstance(space, gym.spaces.Box) and space.shape == (dataset.obs_dim,):
            return space
    return gym.spaces.Box(-np.inf, np.inf, (dataset.obs_dim,), np.float32)


def _seed_array(seeds: list) -> np.ndarray | None:
    """(E,) int64 of the episodes' reset seeds (-1 where none), None when none is recorded."""
    if all(seed is None for seed in seeds):
        return None
    if any(seed is not None and not 0 <= int(seed) < 2**63 for seed in seeds):
        return None  # not representable in int64; the seeds are left out
    return np.array([-1 if seed is None else int(seed) for seed in seeds], dtype=np.int64)


def _env_id(metadata: dict) -> str | None:
    """Id of the evaluation env recorded in Minari metadata, else of the collecting env."""
    spec = metadata.get("eval_env_spec") or metadata.get("env_spec")
    try:
        return json.loads(spec)["id"] if spec else None
    except (ValueError, KeyError, TypeError):
        return None


def _buffer(episode: dict[str, np.ndarray], seed: int | None) -> EpisodeBuffer:
    return EpisodeBuffer(
        seed=seed,
        observations=episode["observations"],
        actions=episode["actions"],
        rewards=episode["rewards"],
        terminations=episode["terminations"],
        truncations=episode["truncations"],
    )


@contextmanager
def _store_at(root: Path) -> Iterator[None]:
    """Point Minari's store (``MINARI_DATASETS_PATH``) at ``root`` for the block."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
