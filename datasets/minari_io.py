"""Minari datasets: read by id from the local store or from a dataset folder; write anywhere.

A Minari dataset folder holds ``data/metadata.json`` and ``data/main_data.hdf5``; the local
store is ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``) where the dataset
``namespace/name-v0`` lives in the folder ``namespace/name-v0``. Ids need a version suffix.

Writing goes through ``minari.create_dataset_from_buffers`` with whole-episode
``EpisodeBuffer``s (no jax needed) into a staging store next to the destination, then the
finished folder is renamed into place. Its id is the folder's path relative to the store
when the destination lies in the store, else the folder's name, so the folder must be named
like ``NAME-v0``. Spaces are recorded as float32 Boxes, the action box being [-1, 1] (the
normalised actions of ``alm_offline.envs.make_env``, not the raw env's bounds).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
from gymnasium.envs.registration import EnvSpec
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id
from minari.storage.datasets_root_dir import get_dataset_path

import alm_offline.envs  # noqa: F401  (registers T-Ant-v5 / T-Humanoid-v5 for gym.spec)

from .atomic import check_destination, publish, staging_area
from .episodes import DatasetError, EpisodeDataset

_OPEN_ERRORS = (ValueError, KeyError, AssertionError, OSError, TypeError)
_AUTHOR = "alm-offline"
_DESCRIPTION = "Written by alm-offline; actions are normalised to [-1, 1]."


def is_minari_id(text: str) -> bool:
    """True when ``text`` parses as a Minari id ``(namespace/)name-vN``."""
    try:
        parse_dataset_id(text)
    except (ValueError, TypeError):  # TypeError: no version suffix
        return False
    return True


def minari_store() -> Path:
    """The local Minari store (``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``)."""
    return get_dataset_path()


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


def read_minari_id(dataset_id: str, download: bool = False) -> EpisodeDataset:
    """Read ``dataset_id`` from the local store, downloading it first when ``download``."""
    folder = get_dataset_path(dataset_id)
    if minari_data_path(folder) is None:
        if not download:
            raise DatasetError(
                f"Minari dataset {dataset_id} is not in the local store {minari_store()}; "
                f"get it with --download or `minari download {dataset_id}`"
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
    env_spec = None
    if dataset.env_id is not None:
        if dataset.env_id not in gym.registry:
            raise DatasetError(
                f"env id {dataset.env_id!r} is not a registered gymnasium env; name one with --env"
            )
        env_spec = gym.spec(dataset.env_id)
    with staging_area(dst) as area, _store_at(area), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\.")
        try:
            _create(dataset, dataset_id, env_spec)
        except OSError as exc:
            raise DatasetError(f"cannot write {dst}: {exc}") from None
        publish(area / dataset_id, dst, overwrite)
    return dataset_id


def _create(dataset: EpisodeDataset, dataset_id: str, env_spec: EnvSpec | None) -> None:
    """Create ``dataset_id`` in the current Minari store (see ``_store_at``)."""
    created = minari.create_dataset_from_buffers(
        dataset_id,
        [_buffer(episode) for episode in dataset.iter_episodes()],
        env=env_spec,
        eval_env=env_spec,
        algorithm_name=str(dataset.metadata.get("algorithm", "unknown")),
        author=_AUTHOR,
        description=str(dataset.metadata.get("description", _DESCRIPTION)),
        observation_space=gym.spaces.Box(-np.inf, np.inf, (dataset.obs_dim,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (dataset.action_dim,), np.float32),
    )
    scores = {"ref_min_score": dataset.ref_min_score, "ref_max_score": dataset.ref_max_score}
    extra = {k: v for k, v in dataset.metadata.items() if isinstance(v, (str, int, float, bool))}
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
    """Datasets of the local store: id, episodes, steps and env id of each."""
    rows = []
    for dataset_id, metadata in minari.list_local_datasets().items():
        rows.append(
            {
                "id": dataset_id,
                "episodes": metadata.get("total_episodes"),
                "steps": metadata.get("total_steps"),
                "env_id": _env_id(metadata),
            }
        )
    return rows


# ------------------------------------------------------------------------ helpers
def _read(data_path: Path, source: str) -> EpisodeDataset:
    try:
        dataset = minari.MinariDataset(data_path)
        box = gym.spaces.Box
        if not (
            isinstance(dataset.observation_space, box) and isinstance(dataset.action_space, box)
        ):
            raise DatasetError(f"{source} does not have flat Box observations and actions")
        episodes = [
            {
                "observations": ep.observations,
                "actions": ep.actions,
                "rewards": ep.rewards,
                "terminations": ep.terminations,
                "truncations": ep.truncations,
            }
            for ep in dataset.iterate_episodes()
        ]
        metadata = dataset.storage.metadata
    except _OPEN_ERRORS as exc:
        raise DatasetError(f"cannot read Minari dataset {source}: {exc}") from None
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
        metadata={**metadata.get("alm_metadata", {}), **{k: v for k, v in own.items() if v}},
    )


def _env_id(metadata: dict) -> str | None:
    """Id of the evaluation env recorded in Minari metadata, else of the collecting env."""
    spec = metadata.get("eval_env_spec") or metadata.get("env_spec")
    try:
        return json.loads(spec)["id"] if spec else None
    except (ValueError, KeyError, TypeError):
        return None


def _buffer(episode: dict[str, np.ndarray]) -> EpisodeBuffer:
    return EpisodeBuffer(
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
