"""The grid of a sweep: its spec, its trials (one unique run dir each; an ALM trial may
train several seeds in one process) and every check that must pass before Ray starts or
anything is written."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alm_offline.config import (
    BASELINE_METHODS,
    METHODS,
    ONLINE_BASELINES,
    ConfigError,
    RunConfig,
    RunMode,
    load_config,
    run_mode,
)
from alm_offline.config import parse_seeds as config_seeds
from alm_offline.errors import AlmError
from alm_offline.tools.sweep.trials import trial_rows

ADDRESS_TIMEOUT_S = 5.0
BASELINES_ANY = (*BASELINE_METHODS, *ONLINE_BASELINES)  # d3rlpy's: one seed per trial
DEFAULT_CPUS_PER_TRIAL = 1.0
DEFAULT_GPUS_PER_TRIAL = 0.0
LEGACY_RECORD = {"seeds_per_trial": 1}  # a record from before batched trials: one seed each


class SweepError(AlmError):
    """A sweep that cannot start as asked (one-line message)."""


@dataclass(frozen=True)
class SweepSpec:
    """Everything a sweep (and its resume) needs; stored in ``sweep.json``.

    ``mode`` is ``online`` (``cells`` are env ids, ``methods`` is ``["alm"]``) or
    ``offline`` (``cells`` are dataset specs: Minari ids, folders or .hdf5 files).
    ``seeds_per_trial`` is how many seeds of a cell one ALM trial trains in one process
    (``None``: all of them); baselines always train one seed per trial.
    """

    mode: str
    name: str
    config: str | None
    cells: list[str]
    methods: list[str]
    seeds: list[int]
    overrides: list[str]
    python: str
    address: str | None = None
    cpus_per_trial: float = DEFAULT_CPUS_PER_TRIAL
    gpus_per_trial: float = DEFAULT_GPUS_PER_TRIAL
    seeds_per_trial: int | None = None

    @property
    def run_mode(self) -> RunMode:
        """The ``RunMode`` of ``mode``."""
        return run_mode(self.mode)

    @property
    def threads(self) -> int:
        """Torch threads of one trial: its CPU share rounded, at least 1."""
        return max(1, round(self.cpus_per_trial))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SweepSpec:
        values = {**LEGACY_RECORD, **record}
        try:
            return cls(**{name: values[name] for name in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise SweepError(f"sweep.json is not a sweep record ({exc})") from None


# ----------------------------------------------------------------------------- parsing
def parse_list(text: str, option: str) -> list[str]:
    """``a,b,c`` -> ``["a", "b", "c"]``; ``SweepError`` on an empty list or item."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or not all(parts):
        raise SweepError(f"{option} must be a comma-separated list, got '{text}'")
    return parts


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``1,2,3``, ranges ``1-5`` or both, as ``seeds=`` takes them."""
    try:
        return config_seeds(text)
    except ConfigError:
        raise SweepError(
            f"--seeds must be comma-separated integers or ranges (1-5), got '{text}'"
        ) from None


def parse_methods(text: str) -> list[str]:
    """``--methods`` -> method names among ``config.METHODS``."""
    methods = parse_list(text, "--methods")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SweepError(f"--methods must be a comma-separated list of {', '.join(METHODS)}")
    return methods


# ------------------------------------------------------------------------------ trials
def cell_slugs(mode: str, cells: Sequence[str]) -> list[str]:
    """One folder name per cell, unique within the sweep: an env id as it is; a dataset
    file by its name (``a/ip.hdf5`` -> ``ip.hdf5``), with as many parent folders as make it
    unique (``a_ip.hdf5``, ``b_ip.hdf5``); a Minari id with ``/`` as ``_``."""
    if run_mode(mode).online:  # env ids are folder names already
        return list(cells)
    parts = [Path(c).parts if Path(c).suffix else (c.strip("/").replace("/", "_"),) for c in cells]
    depth = [1] * len(cells)
    while True:
        slugs = ["_".join(p[-d:]) for p, d in zip(parts, depth, strict=True)]
        clash = [i for i, s in enumerate(slugs) if slugs.count(s) > 1]
        deeper = [i for i in clash if depth[i] < len(parts[i])]
        if not deeper:
            break
        for i in deeper:
            depth[i] += 1
    seen: dict[str, int] = {}
    for i, slug in enumerate(slugs):  # same path spelled alike at every depth: number them
        seen[slug] = seen.get(slug, 0) + 1
        slugs[i] = slug if seen[slug] == 1 else f"{slug}-{seen[slug]}"
    return slugs


def seed_chunks(spec: SweepSpec, method: str) -> list[list[int]]:
    """The seeds of one (cell, ``method``) split into trials: consecutive chunks of
    ``seeds_per_trial`` (all the seeds when ``None``) for ALM, one seed each for a baseline
    (d3rlpy runs cannot batch)."""
    size = 1 if method in BASELINES_ANY else spec.seeds_per_trial or len(spec.seeds)
    size = max(1, size)  # check_spec refuses a size below 1 before any grid is made
    return [spec.seeds[i : i + size] for i in range(0, len(spec.seeds), size)]


def grid_trials(spec: SweepSpec, out: Path) -> list[dict[str, Any]]:
    """Every trial in grid order (cell, then method, then seeds), each with its run dir
    under ``OUT/ENV`` online (``OUT/ENV/METHOD`` when it trains SAC beside ALM),
    ``OUT/DATASET/METHOD`` offline: ``sSEED`` for one seed, that folder itself for a batch
    of all the seeds, ``seeds-FIRST-LAST`` for a batch of some (the seeds of a batch land
    in ``DIR/sSEED``)."""
    key = spec.run_mode.cell_key
    per_method = not spec.run_mode.online or spec.methods != ["alm"]
    trials = []
    for cell, slug in zip(spec.cells, cell_slugs(spec.mode, spec.cells), strict=True):
        for method in spec.methods:
            folder = out / slug
            if per_method:  # a folder per method
                folder = folder / method.replace("+", "")
            for seeds in seed_chunks(spec, method):
                if len(seeds) == 1:
                    run_dir = folder / f"s{seeds[0]}"
                elif len(seeds) == len(spec.seeds):
                    run_dir = folder
                else:
                    run_dir = folder / f"seeds-{seeds[0]}-{seeds[-1]}"
                trials.append(
                    {key: cell, "method": method, "seeds": seeds, "run_dir": str(run_dir)}
                )
    return trials


def grid_rows(trials: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pending rows of ``trials``, one per (cell, method, seed), in grid order."""
    return [row for trial in trials for row in trial_rows(trial)]


# ------------------------------------------------------------------------------ checks
def check_spec(spec: SweepSpec) -> None:
    """Every check a trial would otherwise fail inside its worker, in the driver, before
    Ray starts: the grid, the resources, each trial's config, each env or dataset, the
    trials' python (and d3rlpy for baselines) and the cluster's address."""
    mode = spec.run_mode
    what = mode.cell_key
    if not spec.cells or not spec.seeds or not spec.methods:
        raise SweepError(f"give at least one {what} and one seed (--seeds)")
    online_methods = ("alm", *ONLINE_BASELINES)
    if mode.online and not set(spec.methods) <= set(online_methods):
        raise SweepError(f"an online sweep trains {' and '.join(online_methods)}; "
                         f"{', '.join(BASELINE_METHODS)} train on --datasets")  # fmt: skip
    if not mode.online and set(spec.methods) & set(ONLINE_BASELINES):
        raise SweepError(f"{', '.join(ONLINE_BASELINES)} trains online: give --envs")
    keys = spec.cells if mode.online else [_same_file_key(c) for c in spec.cells]
    for label, items in ((mode.cell_key, keys),
                         ("seed", spec.seeds), ("method", spec.methods)):  # fmt: skip
        repeated = sorted({str(x) for x in items if list(items).count(x) > 1})
        if repeated:
            raise SweepError(f"{label} listed twice: {', '.join(repeated)}")
    per_trial = spec.seeds_per_trial
    if per_trial is not None and (type(per_trial) is not int or per_trial < 1):
        raise SweepError(f"--seeds-per-trial must be an integer >= 1, got {per_trial}")
    if not spec.cpus_per_trial > 0:
        raise SweepError(f"--cpus-per-trial must be positive, got {spec.cpus_per_trial:g}")
    if not spec.gpus_per_trial >= 0:
        raise SweepError(f"--gpus-per-trial must be >= 0, got {spec.gpus_per_trial:g}")
    if spec.config is None and mode.default_config is None:
        raise SweepError(f"an {mode.name} sweep needs --config")
    _check_trials(spec)
    check_python(spec.python, baselines=any(m in BASELINES_ANY for m in spec.methods))
    if spec.address is None:
        _check_local_resources(spec.cpus_per_trial, spec.gpus_per_trial)
    else:
        check_address(spec.address)


def _same_file_key(cell: str) -> str:
    """Two spellings of one dataset file (``a/ip.hdf5``, ``./a/ip.hdf5``) as one key."""
    path = Path(cell)
    return str(path.resolve()) if path.exists() else cell


def trial_configs(spec: SweepSpec) -> list[RunConfig]:
    """The config of each (cell, method) at the first seed, and of each seed at the first
    cell; ``ConfigError`` names the trial. (Trials differ only in these keys.)"""
    default = spec.config or spec.run_mode.default_config
    key = spec.run_mode.cell_key
    combos = {(c, m, spec.seeds[0]) for c in spec.cells for m in spec.methods}
    combos |= {(spec.cells[0], spec.methods[0], s) for s in spec.seeds}
    cfgs = []
    for cell, method, seed in sorted(combos, key=lambda x: (spec.cells.index(x[0]), x[1], x[2])):
        extra = (f"{key}={cell}", f"method={method}", f"seed={seed}", f"threads={spec.threads}")
        try:
            cfgs.append(load_config(default, (*spec.overrides, *extra)))
        except ConfigError as exc:
            raise ConfigError(f"{exc} (trial {cell} {method} seed {seed})") from None
    return cfgs


def _check_trials(spec: SweepSpec) -> None:
    """Each trial's method can train in the sweep's mode; each env exists, each dataset
    loads and suits its methods (what the trial's own start would check)."""
    from alm_offline.runtime.envs import describe_env
    from alm_offline.training.methods import method_for
    from alm_offline.training.start import load_offline_dataset

    datasets: dict[str | None, Any] = {}
    for cfg in trial_configs(spec):
        method = method_for(cfg.method, spec.mode)
        if spec.run_mode.online:
            env = describe_env(cfg.env)
            _check_trial_memory(spec, cfg, env.obs_dim, env.action_dim, 0)
            continue
        if cfg.dataset not in datasets:
            datasets[cfg.dataset] = load_offline_dataset(cfg)
        data = datasets[cfg.dataset]
        if method.check is not None:
            method.check(cfg.method, data)
        _check_trial_memory(spec, cfg, data.obs_dim, data.action_dim, data.num_steps)


def _check_trial_memory(
    spec: SweepSpec, cfg: RunConfig, obs_dim: int, action_dim: int, rows: int
) -> None:
    """The memory the largest ALM trial of ``cfg``'s cell needs (its seeds in one process),
    as the trial's own start would estimate it, against what is free: before Ray starts.
    (d3rlpy's baselines size themselves; a cluster's nodes are not this machine.)"""
    from alm_offline.training.resources import check_resources, estimate_run

    if cfg.method != "alm" or spec.address is not None:
        return
    largest = max(seed_chunks(spec, "alm"), key=len)
    trial = replace(cfg, seed=largest[0], seeds=largest if len(largest) > 1 else [])
    estimate = estimate_run(
        trial, obs_dim, action_dim, online=spec.run_mode.online, dataset_rows=rows
    )
    check_resources(estimate, Path("."), f"a trial of {len(largest)} seed(s)")


FIND_MODULES = (
    "import importlib.util, sys; "
    "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
)


def check_python(python: str, baselines: bool) -> None:
    """The trials' interpreter exists and finds ``alm_offline`` (its training entry) and, when
    the grid has baselines, d3rlpy."""
    if not Path(python).is_file():
        raise SweepError(f"--python '{python}' is not a file")
    modules = ["alm_offline.training", *(["d3rlpy"] if baselines else [])]
    try:
        found = subprocess.run(
            [python, "-c", FIND_MODULES, *modules], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SweepError(f"--python '{python}' does not run: {exc}") from None
    missing = found.stdout.split()
    if found.returncode != 0 or "alm_offline.training" in missing:
        raise SweepError(f"--python '{python}' cannot import alm_offline: pip install alm-offline")
    if "d3rlpy" in missing:
        raise SweepError(
            f"--python '{python}' has no d3rlpy, which the baselines need: "
            "pip install 'alm-offline[baselines]' in that env"
        )


def _check_local_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    import os

    import torch

    cpus, gpus = os.cpu_count() or 1, torch.cuda.device_count()
    if cpus_per_trial > cpus or gpus_per_trial > gpus:
        raise SweepError(
            f"a trial asks for {cpus_per_trial} CPUs and {gpus_per_trial} GPUs; "
            f"this machine has {cpus} CPUs and {gpus} GPUs"
        )


HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4  # the frame type a gRPC server answers the hello with


def check_address(address: str, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """Fail fast (``SweepError``) unless ``host:port`` answers as Ray does; ``auto`` passes.

    Ray's head (GCS) and Ray Client ports are gRPC servers: sent the HTTP/2 client preface
    and an empty SETTINGS frame, they answer with a SETTINGS frame. Any other listener (or
    none) is refused before Ray starts. Passing this check is not trust: joining a cluster
    runs its code and unpickles its results (see ``alm sweep --help``).
    """
    if address == "auto":
        return
    bare = address.split("://", 1)[1] if "://" in address else address
    host, _, port = bare.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise SweepError(f"--address must be host:port or auto, got '{address}'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            conn.sendall(HTTP2_HELLO)
            header = b""
            while len(header) < 9:
                chunk = conn.recv(9 - len(header))
                if not chunk:
                    break
                header += chunk
    except TimeoutError:
        header = b""
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SweepError(f"no Ray cluster answers at {address}: {reason}") from None
    if len(header) < 9 or header[3] != HTTP2_SETTINGS:
        raise SweepError(
            f"{address} does not answer as a Ray cluster (a gRPC server) does; "
            "check the host and port of the cluster's head"
        )


def default_python() -> str:
    return sys.executable
