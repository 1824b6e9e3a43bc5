"""D4RL-layout HDF5 files: one row per transition, episodes back to back.

Datasets read: ``observations`` (N, D), ``actions`` (N, A), ``rewards`` (N,), ``terminals``
(N,), and when present ``timeouts`` (N,) and ``next_observations`` (N, D). Groups such as
``infos/*`` are ignored; scalar datasets and attributes of ``metadata/`` (and the root's
attributes) become the dataset's metadata, where ``env_id`` and ``ref_min_score`` /
``ref_max_score`` are recognised.

Episode ends, in this order of preference:

1. With ``timeouts``: transition ``i`` ends an episode when ``terminals[i] | timeouts[i]``.
   A timeout is a truncation (time limit), never a termination.
2. Without ``timeouts`` (a ``DatasetWarning`` says so), with ``next_observations``:
   ``terminals[i]``, or ``next_observations[i] != observations[i + 1]`` in any component
   (exact comparison: a reset starts a new episode).
3. Without either: ``terminals[i]``, or the episode has reached ``max_episode_steps``
   transitions when the env's limit is given; otherwise terminals alone.

The last transition of the file always ends an episode; when it carries neither flag the
file stopped mid-episode and that episode is read as truncated (``open_end``; written back
unflagged). Ends that are not terminals are truncations. Flags must be 0 or 1.

Actions are in the env's own units (D4RL's convention). Their box is, in this order: the
one the file declares (``metadata/`` attributes ``action_low``, ``action_high``, written with
``action_units="env"``); [-1, 1] for files this project wrote before it stored env units
(they say ``action_units="normalized"``, or their description says the actions are
"normalised to [-1, 1]"); else the box ``load_dataset`` settles: ``--action-low`` /
``--action-high``, or the env's from ``--env`` or ``metadata/env_id``.

Final observations: with ``next_observations``, an episode's last observation is
``next_observations`` of its last transition. Without it, the successor of an episode's
last transition is unknown, so that transition is dropped (the episode, now ending on an
ordinary state, is truncated there) and one-step episodes vanish; a ``DatasetWarning``
gives the counts.

The writer produces the same layout from an ``EpisodeDataset``, always with ``timeouts``
and ``next_observations`` (an episode ending with neither flag gets a timeout, except an
``open_end``), actions in the env's units (the box of ``env_id`` when gymnasium knows it,
else the dataset's own), ``metadata/`` attributes env_id, action_units="env", action_low,
action_high, ref_min_score, ref_max_score and the scalar metadata (algorithm, description,
...), and ``metadata/episode_seeds`` when seeds are known. Reading what it wrote gives back
identical arrays.

Before any array is read, its declared size is compared with the bytes the file stores for
it (at most ``MAX_COMPRESSION`` times more, gzip's limit being about 1000) and the total with
the memory available, so a small crafted file cannot ask for gigabytes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np

from .action_box import ActionBox
from .atomic import check_destination, check_room, publish, staging_area, write_failure
from .episodes import (
    DatasetError,
    DatasetWarning,
    EpisodeDataset,
    check_ref_scores,
    flag_array,
    typed_array,
)
from .safety import check_sizes, refuse_external_links

REQUIRED = ("observations", "actions", "rewards", "terminals")
OPTIONAL = ("timeouts", "next_observations")
HDF5_SUFFIXES = (".hdf5", ".h5")
ENV_UNITS, NORMALIZED_UNITS = "env", "normalized"
LEGACY_MARK = "normalised to [-1, 1]"  # in the description of files written before env units
_H5_ERRORS = (OSError, KeyError, RuntimeError, TypeError, ValueError)


def read_hdf5(path: str | Path, max_episode_steps: int | None = None) -> EpisodeDataset:
    """Read a D4RL-layout file; ``max_episode_steps`` is used only by rule 3 above."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no such file: {path}")
    try:
        if not h5py.is_hdf5(path):
            raise DatasetError(f"{path} is not an HDF5 file")
        with h5py.File(path, "r") as file:
            refuse_external_links(file, path)
            arrays = _read_arrays(file, path)
            metadata = _read_metadata(file)
            box = _declared_box(file, metadata, path)
            seeds = _read_seeds(file, path)
    except DatasetError:
        raise
    except _H5_ERRORS as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    dataset = _to_episodes(arrays, path, max_episode_steps)
    dataset.env_id = _pop_str(metadata, "env_id")
    dataset.ref_min_score = _pop_float(metadata, "ref_min_score")
    dataset.ref_max_score = _pop_float(metadata, "ref_max_score")
    check_ref_scores(dataset.ref_min_score, dataset.ref_max_score, f"{path} metadata")
    dataset.action_box = box
    if seeds is not None and len(seeds) == dataset.num_episodes:
        dataset.episode_seeds = seeds
    dataset.metadata = {**metadata, "source": str(path)}
    return dataset


def write_hdf5(
    dataset: EpisodeDataset,
    path: str | Path,
    overwrite: bool = False,
    *,
    infos: dict[str, np.ndarray] | None = None,
    compression: str | None = None,
) -> Path:
    """Validate ``dataset`` and write it in the D4RL layout to ``path`` atomically.

    ``infos``: per-transition arrays (N, ...) written as ``infos/NAME`` (D4RL's ``qpos``,
    ``qvel``); ``compression``: h5py's filter for every array ("gzip"), none by default.
    The bytes depend only on the arrays (no times recorded), so a remake is identical.
    """
    path = Path(path)
    check_destination(path, overwrite)
    dataset.validate()
    box = dataset.env_unit_box()
    observations, next_observations = dataset.transition_observations()
    ends = np.cumsum(dataset.episode_lengths) - 1
    timeouts = dataset.truncations.copy()
    timeouts[ends] |= ~dataset.terminations[ends]
    if dataset.open_end and not dataset.terminations[-1]:
        timeouts[-1] = False
    arrays = {
        "observations": observations,
        "actions": dataset.actions_in(box),
        "rewards": dataset.rewards,
        "terminals": dataset.terminations,
        "timeouts": timeouts,
        "next_observations": next_observations,
    }
    attrs = {
        **{k: v for k, v in dataset.metadata.items() if isinstance(v, (str, int, float, bool))},
        "env_id": dataset.env_id,
        "ref_min_score": dataset.ref_min_score,
        "ref_max_score": dataset.ref_max_score,
        "action_units": ENV_UNITS,
        "action_low": box.low,
        "action_high": box.high,
    }
    for name, array in (infos or {}).items():
        _check_info(name, array, dataset.num_steps)
    check_room(path, dataset.nbytes)
    with staging_area(path) as area:
        staged = area / path.name
        try:
            with h5py.File(staged, "w") as file:
                for name, array in arrays.items():
                    file.create_dataset(name, data=array, compression=compression)
                for name, array in (infos or {}).items():
                    file.create_dataset(f"infos/{name}", data=array, compression=compression)
                group = file.create_group("metadata")
                group.attrs.update({k: v for k, v in attrs.items() if v is not None})
                if dataset.episode_seeds is not None:
                    group.create_dataset("episode_seeds", data=dataset.episode_seeds)
        except (OSError, RuntimeError) as exc:
            raise write_failure(path, exc) from None
        publish(staged, path, overwrite)
    return path


def _check_info(name: str, array: np.ndarray, rows: int) -> None:
    if len(array) != rows:
        raise DatasetError(f"infos/{name} has {len(array)} rows for {rows} transitions")


def hdf5_overview(path: Path) -> dict:
    """Quick facts about a D4RL-layout file (transitions, episodes, dims) for listings;
    a file that cannot be read gets an ``error`` instead."""
    try:
        with h5py.File(path, "r") as file:
            refuse_external_links(file, path)
            missing = [k for k in REQUIRED if not isinstance(file.get(k), h5py.Dataset)]
            if missing:
                return {"path": str(path), "error": f"lacks {', '.join(missing)}"}
            flag_names = [
                k for k in ("terminals", "timeouts") if isinstance(file.get(k), h5py.Dataset)
            ]
            check_sizes([file[k] for k in flag_names], path)
            ends = np.zeros(len(file["terminals"]), dtype=bool)
            for name in flag_names:
                ends |= flag_array(name, np.asarray(file[name][()]).reshape(len(ends), -1)[:, 0])
            env_id = _read_metadata(file).get("env_id")
            return {
                "path": str(path),
                "transitions": len(ends),
                "episodes": int(ends.sum() + (len(ends) > 0 and not ends[-1])),
                "obs_dim": int(file["observations"].shape[-1]),
                "action_dim": int(file["actions"].shape[-1]),
                "env_id": None if env_id is None else str(env_id),
            }
    except (DatasetError, *_H5_ERRORS) as exc:
        return {"path": str(path), "error": str(exc)}


# ----------------------------------------------------------------- reading helpers
def _read_arrays(file: h5py.File, path: Path) -> dict[str, np.ndarray]:
    missing = [k for k in REQUIRED if not isinstance(file.get(k), h5py.Dataset)]
    if missing:
        raise DatasetError(
            f"{path} lacks the D4RL arrays {', '.join(missing)} "
            f"(it has: {', '.join(sorted(file)) or 'nothing'})"
        )
    names = REQUIRED + tuple(k for k in OPTIONAL if isinstance(file.get(k), h5py.Dataset))
    shapes = {name: file[name].shape for name in names}
    n = shapes["observations"][0] if shapes["observations"] else 0
    if n == 0:
        raise DatasetError(f"{path} holds no transitions")
    for name, shape in shapes.items():
        if not shape or shape[0] != n:
            rows = "a scalar" if not shape else f"{shape[0]} rows"
            raise DatasetError(f"{path}: {name} has {rows}, observations has {n}")
        wanted = 2 if name in ("observations", "actions", "next_observations") else 1
        squeezable = len(shape) == 2 and wanted == 1 and shape[1] == 1
        if len(shape) != wanted and not squeezable:
            raise DatasetError(f"{path}: {name} has shape {shape}, expected {wanted}-D")
    check_sizes([file[name] for name in names], path)
    arrays = {name: file[name][()] for name in names}
    for name, array in arrays.items():
        if array.ndim == 2 and name not in ("observations", "actions", "next_observations"):
            arrays[name] = array[:, 0]
    if "next_observations" in arrays and (
        arrays["next_observations"].shape != arrays["observations"].shape
    ):
        raise DatasetError(f"{path}: next_observations and observations differ in shape")
    return arrays


def _episode_ends(
    arrays: dict[str, np.ndarray],
    terminals: np.ndarray,
    path: Path,
    max_episode_steps: int | None,
) -> np.ndarray:
    """(N,) bool: transition i ends an episode (rules 1-3 of the module docstring)."""
    if "timeouts" in arrays:
        ends = terminals | flag_array("timeouts", arrays["timeouts"])
    elif "next_observations" in arrays:
        ends = terminals.copy()
        ends[:-1] |= np.any(arrays["next_observations"][:-1] != arrays["observations"][1:], axis=1)
        rule = "discontinuities between next_observations[i] and observations[i+1]"
        warnings.warn(
            f"{path} has no timeouts; episode ends inferred from terminals and {rule}",
            DatasetWarning,
            stacklevel=3,
        )
    else:
        ends = terminals.copy()
        rule = "terminals only"
        if max_episode_steps:
            ends |= _steps_since_terminal(terminals) % max_episode_steps == 0
            rule = f"terminals and the env's limit of {max_episode_steps} steps"
        warnings.warn(
            f"{path} has no timeouts; episode ends inferred from {rule}",
            DatasetWarning,
            stacklevel=3,
        )
    ends[-1] = True
    return ends


def _steps_since_terminal(terminals: np.ndarray) -> np.ndarray:
    """(N,) 1-based count of transitions since the last terminal (inclusive of this one)."""
    run_start = np.zeros(len(terminals), dtype=np.int64)
    boundaries = np.flatnonzero(terminals[:-1]) + 1
    run_start[boundaries] = boundaries
    return np.arange(len(terminals)) - np.maximum.accumulate(run_start) + 1


def _to_episodes(
    arrays: dict[str, np.ndarray], path: Path, max_episode_steps: int | None
) -> EpisodeDataset:
    terminals = flag_array("terminals", arrays["terminals"])
    timeouts = flag_array("timeouts", arrays["timeouts"]) if "timeouts" in arrays else None
    open_end = not (terminals[-1] or (timeouts is not None and timeouts[-1]))
    ends = _episode_ends(arrays, terminals, path, max_episode_steps)
    truncations = ends & ~terminals
    if timeouts is not None:
        truncations |= timeouts
    end_index = np.flatnonzero(ends)
    lengths = np.diff(end_index, prepend=-1)
    obs, actions, rewards = arrays["observations"], arrays["actions"], arrays["rewards"]
    if "next_observations" in arrays:
        last_obs = np.cumsum(lengths + 1) - 1
        observations = np.empty((len(obs) + len(lengths), obs.shape[1]), dtype=obs.dtype)
        inner = np.ones(len(observations), dtype=bool)
        inner[last_obs] = False
        observations[inner] = obs
        observations[last_obs] = arrays["next_observations"][end_index]
        return EpisodeDataset(
            observations, actions, rewards, terminals, truncations, lengths, open_end=open_end
        )
    starts = np.concatenate([[True], ends[:-1]])
    kept = lengths > 1
    warnings.warn(
        f"{path} has no next_observations: dropped the last transition of each of its "
        f"{len(lengths)} episodes (successor unknown) and {int((~kept).sum())} one-step "
        "episodes",
        DatasetWarning,
        stacklevel=2,
    )
    if not kept.any():
        raise DatasetError(f"{path} has no episode longer than one step")
    new_lengths = lengths[kept] - 1
    truncated = np.zeros(int(new_lengths.sum()), dtype=bool)
    truncated[np.cumsum(new_lengths) - 1] = True
    return EpisodeDataset(
        observations=obs[~(ends & starts)],
        actions=actions[~ends],
        rewards=rewards[~ends],
        terminations=np.zeros_like(truncated),
        truncations=truncated,
        episode_lengths=new_lengths,
        open_end=open_end,
    )


def _read_metadata(file: h5py.File) -> dict:
    """Scalar root attributes, then scalar ``metadata/`` datasets, then its attributes."""
    sources: list = [file.attrs]
    group = file.get("metadata")
    if isinstance(group, h5py.Group):
        scalars = {
            k: v[()] for k, v in group.items() if isinstance(v, h5py.Dataset) and v.shape == ()
        }
        sources += [scalars, group.attrs]
    metadata = {}
    for source in sources:
        for key, value in source.items():
            plain = _scalar(value)
            if plain is not None:
                metadata[key] = plain
    return metadata


def _declared_box(file: h5py.File, metadata: dict, path: Path) -> ActionBox | None:
    """The action box the file declares (see the module docstring), else None."""
    units = metadata.pop("action_units", None)
    action_dim = file["actions"].shape[-1]
    if units == NORMALIZED_UNITS or (
        units is None and LEGACY_MARK in str(metadata.get("description", ""))
    ):
        return ActionBox.unit(action_dim)
    if units not in (None, ENV_UNITS):
        raise DatasetError(f"{path}: metadata action_units must be 'env' or 'normalized'")
    group = file.get("metadata")
    attrs = group.attrs if isinstance(group, h5py.Group) else {}
    if "action_low" not in attrs and "action_high" not in attrs:
        return None
    try:
        low = np.asarray(attrs["action_low"], dtype=np.float32)
        high = np.asarray(attrs["action_high"], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{path}: metadata needs numeric action_low and action_high") from None
    box = ActionBox(low, high)
    if box.dim != action_dim:
        raise DatasetError(
            f"{path}: the declared action box has {box.dim} dims, the actions {action_dim}"
        )
    return box


def _read_seeds(file: h5py.File, path: Path) -> np.ndarray | None:
    """``metadata/episode_seeds`` (E,) int64 when present."""
    group = file.get("metadata")
    seeds = group.get("episode_seeds") if isinstance(group, h5py.Group) else None
    if not isinstance(seeds, h5py.Dataset) or len(seeds.shape) != 1:
        return None
    check_sizes([seeds], path)
    return typed_array("episode_seeds", seeds[()], np.int64)


def _scalar(value: object) -> str | int | float | bool | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
        return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    return value if isinstance(value, (str, int, float, bool)) else None


def _pop_str(metadata: dict, key: str) -> str | None:
    value = metadata.pop(key, None)
    return None if value is None else str(value)


def _pop_float(metadata: dict, key: str) -> float | None:
    value = metadata.pop(key, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetError(f"metadata {key} is not a number: {value!r}")
    return float(value)
