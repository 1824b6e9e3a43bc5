"""One entry point per job: load a dataset from whatever names it, save it, convert, list.

A dataset spec is an existing ``.hdf5``/``.h5`` (or other HDF5) file, an existing Minari
dataset folder, or the id of a Minari dataset in the local store. Reference scores come from
explicit arguments, else from the source, else from D4RL's table when the env id (or the
source's file or folder name) names a D4RL MuJoCo family.

A destination is an HDF5 file when it ends in ``.hdf5``/``.h5`` (or the format says so).
Otherwise it is a Minari dataset: a Minari id (``NAMESPACE/NAME-vN`` or ``NAME-vN``) goes into
the local Minari store, where ``minari.load_dataset(ID)`` and ``minari list local`` see it,
unless it is clearly a path: it starts with ``./``, ``../``, ``/`` or ``~``, or already exists
as a folder; a path is written as that folder. Anything else is refused.

Each format is a row of ``formats.FORMATS``; nothing here names one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import gymnasium as gym

from alm_offline.errors import printable
from alm_offline.runtime.envs import EnvSpec, describe_env, env_spec, make_env
from alm_offline.scores import reference_scores

from .action_box import BOUND_OPTIONS, ActionBox, box_from_bounds
from .atomic import check_can_create, check_destination
from .collect import PolicyFactory, check_collect_args, collect, policy_for
from .episodes import (
    DatasetError,
    DatasetWarning,
    EpisodeDataset,
    check_ref_scores,
)
from .formats import DEFAULT_FORMAT, FORMATS, DatasetFormat

ENV_HINT = "--env ENV_ID (train-offline: env=ENV_ID)"
BOX_HINT = (
    f"declare their box with {BOUND_OPTIONS} (-1 and 1 if they already lie in the agent's [-1, 1])"
)


BUNDLED_DATASET = "inverted_pendulum-alm-v0.hdf5"


def bundled_dataset_path() -> Path:
    """The small dataset shipped with the package (see datasets/bundled/README.md)."""
    return Path(__file__).resolve().parent / "bundled" / BUNDLED_DATASET


def infer_format(dst: str | Path) -> str:
    """The format whose suffixes ``dst`` ends with (``hdf5`` for ``.hdf5``/``.h5``), else
    ``DEFAULT_FORMAT`` (``minari``)."""
    suffix = Path(dst).suffix.lower()
    return next((f.name for f in FORMATS.values() if suffix in f.suffixes), DEFAULT_FORMAT)


def format_for(dst: str | Path, fmt: str | None = None) -> DatasetFormat:
    """The format ``dst`` is written in: ``fmt``, else the one ``infer_format`` gives."""
    name = fmt or infer_format(dst)
    if name not in FORMATS:
        raise DatasetError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[name]


def resolve_destination(dst: str | Path, fmt: str | None = None) -> tuple[Path, str]:
    """Where ``dst`` is written and in which format (see the module docstring)."""
    form = format_for(dst, fmt)
    return form.locate(dst), form.name


def load_dataset(
    spec: str | Path,
    download: bool | None = None,
    *,
    env_id: str | None = None,
    ref_min: float | None = None,
    ref_max: float | None = None,
    clip_actions: bool = False,
    action_low: Sequence[float] = (),
    action_high: Sequence[float] = (),
    require_box: bool = True,
) -> EpisodeDataset:
    """Read ``spec`` (see the module docstring), settle env id, action box and reference
    scores, validate.

    ``env_id`` overrides the source's env; the data's dims are checked against it (or the
    source's env when gymnasium knows it). ``action_low``/``action_high`` (one value for
    every dim, or one per dim) declare the box the actions are stored in: for a source that
    declares none it takes the place of the env's box; a source that declares another box is
    refused. ``require_box=False`` loads a source whose box stays unknown (no env, no
    declared box) with ``action_box`` None, its actions unchecked (``alm dataset info``).
    ``download`` fetches a Minari id missing locally; None says the caller has no
    ``--download`` option (see ``read_minari_id``). Raises ``DatasetError`` or ``EnvError``.
    """
    check_ref_scores(ref_min, ref_max, "--ref-min/--ref-max")
    env_spec = describe_env(env_id) if env_id is not None else None
    dataset = _read(spec, download, env_spec)
    if env_spec is not None:
        if dataset.env_id not in (None, env_id):
            warnings.warn(
                f"using env {env_id} instead of the source's {dataset.env_id}",
                DatasetWarning,
                stacklevel=2,
            )
        dataset.env_id = env_id
    elif dataset.env_id is not None:
        if dataset.env_id in gym.registry:
            env_spec = describe_env(dataset.env_id)
        else:
            warnings.warn(
                f"the source's env {dataset.env_id!r} is not a registered gymnasium env; "
                "its dims are not checked",
                DatasetWarning,
                stacklevel=2,
            )
    if action_low or action_high:
        dataset.action_box = _given_box(spec, dataset, action_low, action_high)
    if dataset.action_box is None:
        dataset.action_box = _env_action_box(spec, dataset.env_id, env_spec, require_box)
    if ref_min is not None:
        dataset.ref_min_score, dataset.ref_max_score = ref_min, ref_max
    elif dataset.ref_min_score is None or dataset.ref_max_score is None:
        names = (dataset.env_id or "", Path(str(dataset.metadata.get("source", ""))).name)
        table = next(filter(None, map(reference_scores, names)), None)
        if table is not None:
            dataset.ref_min_score, dataset.ref_max_score = table
    dataset.validate(env_spec, clip_actions=clip_actions)
    return dataset


def save_dataset(
    dataset: EpisodeDataset, dst: str | Path, fmt: str | None = None, overwrite: bool = False
) -> str:
    """Write ``dataset`` to ``dst`` as ``fmt`` (inferred when None; a Minari id goes into
    the local store, see the module docstring); returns where it was written."""
    form = format_for(dst, fmt)
    return form.write(dataset, form.locate(dst), overwrite)


def check_writable(dst: str | Path, fmt: str | None = None, overwrite: bool = False) -> str:
    """Fail early (``DatasetError``) when ``dst`` cannot be written as ``fmt``; returns the format.

    The destination must not exist unless ``overwrite``, must pass its format's check (a
    Minari folder must be named like an id, ``NAME-v0``) and must be creatable.
    """
    _check_named(dst, "destination")
    form = format_for(dst, fmt)
    path = form.locate(dst)
    check_destination(path, overwrite)
    form.check_destination(path)
    check_can_create(path)
    return form.name


def convert(
    src: str | Path,
    dst: str | Path,
    fmt: str | None = None,
    env_id: str | None = None,
    ref_min: float | None = None,
    ref_max: float | None = None,
    overwrite: bool = False,
    *,
    clip_actions: bool = False,
    download: bool | None = None,
    action_low: Sequence[float] = (),
    action_high: Sequence[float] = (),
) -> EpisodeDataset:
    """Load ``src`` (``action_low``/``action_high`` as ``load_dataset`` takes them), write it
    to ``dst`` as ``fmt`` and return what was written.

    The destination is checked before anything is read: it must not exist unless
    ``overwrite`` (then it is replaced atomically) and must not be the source.
    """
    fmt = check_writable(dst, fmt, overwrite)
    path, _ = resolve_destination(dst, fmt)
    source = _source_format(src).source_path(src)
    if path.exists() and source.exists() and path.resolve() == source.resolve():
        raise DatasetError(f"the destination {dst} is the source")
    dataset = load_dataset(
        src,
        download,
        env_id=env_id,
        ref_min=ref_min,
        ref_max=ref_max,
        clip_actions=clip_actions,
        action_low=action_low,
        action_high=action_high,
    )
    save_dataset(dataset, dst, fmt, overwrite=overwrite)
    return dataset


def collect_dataset(
    out: str | Path,
    env_id: str,
    policy: str | PolicyFactory = "random",
    *,
    steps: int | None = None,
    episodes: int | None = None,
    fmt: str | None = None,
    noise: float = 0.0,
    seed: int = 0,
    overwrite: bool = False,
) -> tuple[EpisodeDataset, str]:
    """``alm dataset collect``: check ``out`` is writable, run ``policy`` (``random`` or a
    factory, ``collect.policy_for``) in ``env_id``, save; returns the dataset and where it
    was written.
    The env is made once, for both the policy's check and the collection."""
    check_collect_args(seed, noise)
    fmt = check_writable(out, fmt, overwrite)  # before the collection is spent
    with closing(make_env(env_id, seed=seed, rescale_actions=False)) as env:
        act, algorithm = policy_for(policy, env_spec(env), seed)
        data = collect(
            env_id,
            act,
            steps=steps,
            episodes=episodes,
            seed=seed,
            noise=noise,
            algorithm=algorithm,
            env=env,
        )
    return data, save_dataset(data, out, fmt, overwrite)


def list_datasets(folder: str | Path | None = None) -> dict:
    """What each format holds locally (the Minari store's datasets; the HDF5 files directly
    in ``folder``), merged into one mapping (``alm dataset list --json``)."""
    if folder is not None and not Path(folder).is_dir():
        raise DatasetError(f"no such folder: {folder}")
    where = Path(folder) if folder is not None else None
    return {key: value for form in FORMATS.values() for key, value in form.listing(where).items()}


def describe_listing(listing: dict) -> str:
    """``alm dataset list``: the ``list_datasets`` result as text, one dataset a line."""
    lines = [line for form in FORMATS.values() for line in form.listing_lines(listing)]
    return "\n".join(map(printable, lines))


def _check_named(spec: str | Path, what: str) -> None:
    """``DatasetError`` for an empty name, which ``Path`` would read as the current folder."""
    if not str(spec).strip():
        raise DatasetError(
            f"the {what} is empty: give a Minari id, a Minari dataset folder or an .hdf5 file"
        )


def _source_format(spec: str | Path) -> DatasetFormat:
    """The first format (in ``FORMATS``' order) that detects ``spec``."""
    _check_named(spec, "dataset")
    form = next((f for f in FORMATS.values() if f.detect(spec)), None)
    if form is None:
        raise DatasetError(
            f"{spec} is neither a file, a folder nor a Minari dataset id (namespace/name-v0)"
        )
    return form


def _read(spec: str | Path, download: bool | None, env_spec: EnvSpec | None) -> EpisodeDataset:
    """``spec`` read by the format that detects it."""
    return _source_format(spec).read(spec, download, env_spec)


def _given_box(
    spec: str | Path, dataset: EpisodeDataset, low: Sequence[float], high: Sequence[float]
) -> ActionBox:
    """The box ``--action-low``/``--action-high`` declare: the source's own must be the same."""
    box = box_from_bounds(low, high, dataset.action_dim)
    own = dataset.action_box
    if own is not None and not own.same_as(box):
        raise DatasetError(
            f"{BOUND_OPTIONS} declare the action box {box.describe()}, but {spec} declares "
            f"{own.describe()}; drop them to use the source's box"
        )
    return box


def _env_action_box(
    spec: str | Path, env_id: str | None, env_spec: EnvSpec | None, required: bool
) -> ActionBox | None:
    """The env's own action box for a source that declares none (a D4RL-layout file); None
    when no env gymnasium knows gives one and the box is not ``required``."""
    if env_id is None or env_id not in gym.registry:
        if not required:
            return None
        named = (
            "names no env"
            if env_id is None
            else f"names env {env_id!r}, which gymnasium does not know,"
        )
        raise DatasetError(
            f"{spec} {named} and declares no action box, so the units of its actions are "
            f"unknown; {BOX_HINT}, or name its env with {ENV_HINT}"
        )
    box = ActionBox.of_env(env_id)
    if env_spec is not None and box.dim != env_spec.action_dim:
        raise DatasetError(f"env {env_id} has {box.dim} action dims, not {env_spec.action_dim}")
    return box
