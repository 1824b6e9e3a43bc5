"""``alm dataset make-suite``: a D4RL-style suite made here, its behaviour policies trained.

The data layer (``datasets/suite.py``) names the levels and writes the datasets; this module
drives the behaviour runs that make them (``alm train-online`` with ``configs/behaviour.yaml``,
then sampling from their checkpoints), which is training, so it lives above the data layer.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alm_offline.config import load_config, resolve_device
from alm_offline.datasets.atomic import check_can_create
from alm_offline.datasets.collect import collect, random_policy
from alm_offline.datasets.convert import check_writable
from alm_offline.datasets.episodes import DatasetError, EpisodeDataset, concatenate
from alm_offline.datasets.minari_io import store_path
from alm_offline.datasets.safety import MEMORY_HEADROOM, available_memory
from alm_offline.datasets.suite import (
    BEHAVIOUR_KINDS,
    EXPERT_FACTOR,
    EXPERT_KINDS,
    SET_HERE,
    SUITE_FILE,
    SUITE_KINDS,
    merge_record,
    replay_dataset,
    save_suite_dataset,
    suite_family,
    suite_id,
    suite_levels,
)
from alm_offline.errors import WriteError
from alm_offline.runtime.envs import EnvSpec, describe_env
from alm_offline.runtime.files import replaced_on_success
from alm_offline.scores import reference_scores
from alm_offline.tools.sweep.spec import check_python
from alm_offline.training.checkpoint import checkpoint_path, checkpoint_policy, read_checkpoint
from alm_offline.training.loggers import check_backends
from alm_offline.training.methods import method_for
from alm_offline.training.rundir import holds_run
from alm_offline.training.sac_behaviour import SacSettings
from alm_offline.training.sac_suite import (
    SAC_LEVELS,
    read_progress,
    sac_file_name,
    settings_options,
)
from alm_offline.training.sac_suite import SUITE_FILE as SAC_SUITE_FILE
from alm_offline.training.start import start_online, train


@dataclass(frozen=True)
class SuitePlan:
    """What ``make_suite`` was asked for, settled (levels ordered, expert steps given)."""

    env_ids: tuple[str, ...]
    prefix: str
    steps: int
    train_steps: int
    expert_steps: int
    levels: tuple[str, ...]
    behaviour_config: str
    behaviour_overrides: tuple[str, ...]
    work_dir: Path
    seed: int
    overwrite: bool

    def wants(self, *kinds: str) -> bool:
        """Whether any of ``kinds`` is among the levels to make."""
        return bool(set(kinds) & set(self.levels))

    def run_dir(self, env_id: str) -> Path:
        """The behaviour run's dir for ``env_id``."""
        return self.work_dir / f"{suite_family(env_id)}-behaviour"

    def behaviour_overrides_for(self, env_id: str) -> tuple[str, ...]:
        """The behaviour run's overrides: make-suite's own, then the user's."""
        return (
            f"env={env_id}",
            f"steps={self.train_steps}",
            f"seed={self.seed}",
            f"agent.buffer_size={2 * self.train_steps + 2}",  # an observation more per episode
            f"run_dir={self.run_dir(env_id)}",
            *self.behaviour_overrides,
        )


def make_suite(
    env_ids: list[str],
    *,
    prefix: str = "alm-suite",
    steps: int = 100_000,
    train_steps: int = 20_000,
    expert_steps: int | None = None,
    levels: list[str] | tuple[str, ...] = SUITE_KINDS,
    behaviour_config: str = "behaviour",
    behaviour_overrides: tuple[str, ...] = (),
    work_dir: str | Path = "suites/alm-suite",
    seed: int = 0,
    overwrite: bool = False,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Make the suite's ``levels`` for ``env_ids``; returns what ``suite.json`` holds.

    ``expert_steps`` (default ``EXPERT_FACTOR x train_steps``) is where the expert phase
    ends. Everything is checked before anything is collected, trained or written (see
    ``check_suite``).
    """
    plan = SuitePlan(
        env_ids=tuple(env_ids),
        prefix=prefix,
        steps=steps,
        train_steps=train_steps,
        expert_steps=EXPERT_FACTOR * train_steps if expert_steps is None else expert_steps,
        levels=suite_levels(levels),
        behaviour_config=behaviour_config,
        behaviour_overrides=tuple(behaviour_overrides),
        work_dir=Path(work_dir),
        seed=seed,
        overwrite=overwrite,
    )
    envs = check_suite(plan)
    record: dict[str, Any] = {"prefix": prefix, "seed": seed, "datasets": [], "behaviour": {}}
    for env in envs:
        _EnvSuite(plan, env, record, log).make()
    return merge_record(plan.work_dir / SUITE_FILE, record)


class _EnvSuite:
    """One env's levels: random data, then the behaviour run's medium phase (medium,
    medium-replay), then its expert phase (expert, medium-expert), each phase only when a
    level asked for needs it."""

    def __init__(
        self, plan: SuitePlan, env: EnvSpec, record: dict[str, Any], log: Callable[[str], Any]
    ) -> None:
        self.plan, self.env, self.record, self.log = plan, env, record, log
        self.env_id = env.env_id
        self.run_dir = plan.run_dir(self.env_id)

    def make(self) -> None:
        plan = self.plan
        if plan.wants("random"):
            started = time.perf_counter()
            uniform = random_policy(self.env.action_dim, plan.seed)
            data = collect(self.env_id, uniform, plan.steps, seed=plan.seed, algorithm="random")
            self.save(data, "random", started)
        if not plan.wants(*BEHAVIOUR_KINDS):
            return
        behaviour, noise = self.train_medium()
        medium = self.medium_levels(Path(behaviour["checkpoint"]), noise)
        if plan.wants(*EXPERT_KINDS):
            self.expert_levels(behaviour, medium, noise)

    def save(self, dataset: EpisodeDataset, kind: str, started: float) -> None:
        dataset_id = suite_id(self.plan.prefix, self.env_id, kind)
        save_suite_dataset(self.record, dataset, dataset_id, started, self.plan.overwrite, self.log)

    def train_medium(self) -> tuple[dict[str, Any], float]:
        """Train the behaviour run to ``train_steps``; its record and exploration noise."""
        plan, started = self.plan, time.perf_counter()
        overrides = plan.behaviour_overrides_for(self.env_id)
        start = start_online(plan.behaviour_config, overrides, overwrite=plan.overwrite)
        self.log(
            f"{self.env_id}: training the behaviour policy ({plan.train_steps} env steps) "
            f"in {self.run_dir}"
        )
        summary = train(start, quiet=True)
        behaviour = {
            "run_dir": str(self.run_dir),
            "config": plan.behaviour_config,
            "overrides": list(overrides),
            "checkpoint": str(_keep(checkpoint_path(self.run_dir), "medium")),
            "evaluations": summary["evaluations"],
            "final_eval_return_mean": summary["eval_return_mean"],
            "seconds": time.perf_counter() - started,
        }
        self.record["behaviour"][self.env_id] = behaviour
        return behaviour, start.cfg.agent.expl_std_end

    def medium_levels(self, checkpoint: Path, noise: float) -> EpisodeDataset | None:
        """medium (sampled from the medium checkpoint) and medium-replay (its replay); the
        medium data if it was sampled (medium-expert needs it too)."""
        plan, medium = self.plan, None
        if plan.wants("medium", "medium-expert"):
            started = time.perf_counter()
            medium, _ = _sample(checkpoint, self.env, plan.steps, plan.seed + 1, noise)
            if plan.wants("medium"):
                self.save(medium, "medium", started)
        if plan.wants("medium-replay"):
            started = time.perf_counter()
            replay = replay_dataset(read_checkpoint(checkpoint)["replay"], self.env_id)
            refs = reference_scores(self.env_id) or (None, None)
            replay.ref_min_score, replay.ref_max_score = refs
            replay.metadata = {
                "algorithm": f"replay buffer of alm ({checkpoint})",
                "description": f"the {plan.train_steps}-step online training run of the "
                "medium policy",
            }
            self.save(replay, "medium-replay", started)
        return medium

    def expert_levels(
        self, behaviour: dict[str, Any], medium: EpisodeDataset | None, noise: float
    ) -> None:
        """Train the behaviour run on to ``expert_steps``; expert and medium-expert."""
        plan, started = self.plan, time.perf_counter()
        self.log(f"{self.env_id}: training on to the expert policy ({plan.expert_steps} env steps)")
        resumed = start_online(None, (f"steps={plan.expert_steps}",), resume=self.run_dir)
        summary = train(resumed, quiet=True)
        checkpoint = _keep(checkpoint_path(self.run_dir), "expert")
        behaviour["expert"] = {
            "steps": plan.expert_steps,
            "checkpoint": str(checkpoint),
            "evaluations": [row for row in summary["evaluations"] if row[0] > plan.train_steps],
            "final_eval_return_mean": summary["eval_return_mean"],
            "seconds": time.perf_counter() - started,
        }
        started = time.perf_counter()
        expert, name = _sample(checkpoint, self.env, plan.steps, plan.seed + 2, noise)
        if plan.wants("expert"):
            self.save(expert, "expert", started)
        if plan.wants("medium-expert"):
            started = time.perf_counter()
            mixed = concatenate(medium, expert)
            mixed.metadata = {
                "algorithm": f"{medium.metadata['algorithm']}, then {name}",
                "description": (
                    f"the medium dataset's {medium.num_episodes} episodes, then the expert "
                    f"dataset's {expert.num_episodes} (D4RL's medium-expert)"
                ),
            }
            self.save(mixed, "medium-expert", started)


def check_suite(plan: SuitePlan) -> list[EnvSpec]:
    """Everything ``make_suite`` needs for ``plan``, checked without writing anything;
    returns the envs.

    The sizes (``expert_steps`` beyond ``train_steps``) and the seed (medium uses
    ``seed + 1``, expert ``seed + 2``); the dataset ids (Minari ids, one family per env); the
    overrides (none of the keys make-suite sets); the envs and the memory; each level's
    destination in the store (absent unless ``overwrite``, creatable); when a level needs
    the behaviour run, each run's config and its run dir (holding no run unless
    ``overwrite``, creatable); and ``suite.json``. Raises an ``AlmError`` (``DatasetError``,
    ``ConfigError``, ...).
    """
    _check_sizes(plan)
    for override in plan.behaviour_overrides:
        key = override.split("=", 1)[0].strip()
        if key in SET_HERE:
            raise DatasetError(f"{key}= is set by make-suite: use {SET_HERE[key]}")
    envs = [describe_env(env_id) for env_id in plan.env_ids]
    _check_memory(envs, plan.levels, plan.steps, plan.train_steps)
    for env_id in plan.env_ids:
        for kind in plan.levels:
            check_writable(
                store_path(suite_id(plan.prefix, env_id, kind)), "minari", plan.overwrite
            )
    trained = plan.env_ids if plan.wants(*BEHAVIOUR_KINDS) else ()  # else no run dir
    for env_id in trained:
        _check_behaviour_run(plan, env_id)
    check_can_create(plan.work_dir / SUITE_FILE)
    return envs


def _check_sizes(plan: SuitePlan) -> None:
    """The counts, the seed and the ids (one env family each) of ``plan``."""
    if not plan.env_ids:
        raise DatasetError("--envs names no env")
    for name, value in (("--steps", plan.steps), ("--train-steps", plan.train_steps)):
        if value < 1:
            raise DatasetError(f"{name} must be a positive number, got {value}")
    if plan.expert_steps <= plan.train_steps:
        raise DatasetError(
            f"--expert-steps ({plan.expert_steps}) must be larger than --train-steps "
            f"({plan.train_steps}): the expert phase trains the behaviour run on from there"
        )
    if not 0 <= plan.seed < 2**32 - 2:
        raise DatasetError(
            "--seed must be in [0, 2^32 - 2) (medium uses seed + 1, expert seed + 2), got "
            f"{plan.seed}"
        )
    seen: dict[str, str] = {}
    for env_id in plan.env_ids:
        for kind in plan.levels:
            suite_id(plan.prefix, env_id, kind)
        family = suite_family(env_id)
        if family in seen:
            raise DatasetError(
                f"--envs names the env family {family!r} twice ({seen[family]}, {env_id}): "
                f"both would make {plan.prefix}/{family}/*"
            )
        seen[family] = env_id


def _check_behaviour_run(plan: SuitePlan, env_id: str) -> None:
    """The behaviour run's config, method, loggers and device, and its run dir."""
    run_dir = plan.run_dir(env_id)
    cfg = load_config(plan.behaviour_config, plan.behaviour_overrides_for(env_id))
    method_for(cfg.method, "online")
    check_backends(cfg.logger)
    resolve_device(cfg.device)
    if run_dir.exists() and not run_dir.is_dir():
        raise DatasetError(f"behaviour run dir {run_dir} exists and is not a folder")
    if holds_run(run_dir) and not plan.overwrite:
        raise DatasetError(
            f"behaviour run dir {run_dir} already holds a run (pass --overwrite to "
            "replace it and the suite's datasets)"
        )
    check_can_create(run_dir / "config.yaml")


def _check_memory(
    envs: list[EnvSpec], levels: tuple[str, ...], steps: int, train_steps: int
) -> None:
    """``DatasetError`` when the largest part (a ``steps`` dataset, medium-expert's
    ``2 * steps``, or the behaviour run's replay of ``2 * train_steps + 2`` slots) would not
    fit in the memory available."""
    largest = max(4 * (2 * env.obs_dim + env.action_dim + 1) + 2 for env in envs)
    rows = 2 * steps if "medium-expert" in levels else steps
    needed = largest * max(rows, 2 * train_steps + 2)  # bytes, float32 arrays and flags
    available = available_memory()
    if available is not None and needed * MEMORY_HEADROOM > available:
        raise DatasetError(
            f"--steps {steps} / --train-steps {train_steps} need about {needed / 1e9:.1f} GB "
            f"(several copies of it), more than the {available / 1e9:.1f} GB available"
        )


def _sample(
    checkpoint: Path, env: EnvSpec, steps: int, seed: int, noise: float
) -> tuple[EpisodeDataset, str]:
    """``steps`` transitions of the checkpoint's policy with Gaussian ``noise``, and the
    policy's name."""
    policy, name = checkpoint_policy(checkpoint, env)
    return collect(env.env_id, policy, steps, seed=seed, noise=noise, algorithm=name), name


def _keep(checkpoint: Path, name: str) -> Path:
    """A copy of ``checkpoint`` beside it as ``NAME.pt`` (through a temporary and a rename),
    which the run's later checkpoints leave alone; returns its path."""
    kept = checkpoint.with_name(f"{name}.pt")
    try:
        with replaced_on_success(kept) as tmp:
            shutil.copyfile(checkpoint, tmp)
    except OSError as exc:
        raise WriteError.of(kept, exc, "checkpoint") from None
    return kept


@dataclass(frozen=True)
class SacSuitePlan:
    """``make-suite --behaviour sac``: D4RL's recipe per env (``training/sac_suite.py``).

    Env ``E`` writes ``out_dir/FAMILY-sac/`` (four HDF5 files and ``suite.json``) from its SAC
    run in ``work_dir/FAMILY-sac/``, trained with ``sac`` (its ``env_id`` set per env);
    ``python`` is the baselines' interpreter (d3rlpy)."""

    env_ids: tuple[str, ...]
    out_dir: Path
    work_dir: Path
    python: str
    sac: SacSettings
    steps: int = 100_000
    overwrite: bool = False

    def folders(self, env_id: str) -> tuple[Path, Path]:
        """The env's (out, work) folders."""
        name = f"{suite_family(env_id)}-sac"
        return self.out_dir / name, self.work_dir / name

    def command(self, env_id: str) -> list[str]:
        out, work = self.folders(env_id)
        module = "alm_offline.training.sac_suite"
        options = settings_options(replace(self.sac, env_id=env_id))
        return [self.python, "-m", module, *options, "--steps", str(self.steps), "--out",
                str(out), "--work-dir", str(work), "--exit-with-parent"]  # fmt: skip


def make_sac_suite(plan: SacSuitePlan, log: Callable[[str], Any] = print) -> list[Path]:
    """Each env's SAC suite, one subprocess each in the baselines venv, its progress lines
    passed to ``log``; returns the ``suite.json`` paths. Checked first (``check_sac_suite``);
    a rerun resumes the SAC run and keeps the files already made."""
    check_sac_suite(plan)
    made = []
    for env_id in plan.env_ids:
        out, work = plan.folders(env_id)
        if plan.overwrite:
            shutil.rmtree(work, ignore_errors=True)
        with (
            tempfile.TemporaryFile("w+") as stderr,
            subprocess.Popen(
                plan.command(env_id), stdout=subprocess.PIPE, stderr=stderr, text=True
            ) as child,
        ):
            for line in child.stdout:
                log(line.rstrip("\n"))
            child.wait()
            stderr.seek(0)
            errors = stderr.read().strip().splitlines()
        if child.returncode != 0:
            said = [line for line in errors if line.startswith("error: ")]
            cause = said[-1][len("error: ") :] if said else (errors or ["?"])[-1]
            raise DatasetError(f"{env_id}: the SAC suite stopped: {cause}")
        made.append(out / SAC_SUITE_FILE)
    return made


def check_sac_suite(plan: SacSuitePlan) -> None:
    """The sizes, the envs, the interpreter and each env's folders, before anything runs:
    an output file not made by this work dir's run is refused unless ``overwrite``."""
    sac = plan.sac
    sizes = {
        "--steps": plan.steps,
        "--train-steps": sac.steps,
        "--snapshot-every": sac.snapshot_every,
        "--eval-episodes": sac.eval_episodes,
    }
    for name, value in sizes.items():
        if value < 1:
            raise DatasetError(f"{name} must be a positive number, got {value}")
    if sac.random_steps < 0 or sac.update_start < 0:
        raise DatasetError("--random-steps and --update-start must be 0 or more")
    if not 0 <= sac.seed < 2**31 - 2:
        raise DatasetError(f"--seed must be in [0, 2^31 - 2), got {sac.seed}")
    if len(set(map(suite_family, plan.env_ids))) != len(plan.env_ids) or not plan.env_ids:
        raise DatasetError("--envs must name one env per family, at least one")
    for env_id in plan.env_ids:
        describe_env(env_id)
    check_python(plan.python, baselines=True)
    for env_id in plan.env_ids:
        out, work = plan.folders(env_id)
        for folder in (out, work):
            if folder.exists() and not folder.is_dir():
                raise DatasetError(f"{folder} exists and is not a folder")
            check_can_create(folder / SAC_SUITE_FILE)
        made = read_progress(work)
        for level in SAC_LEVELS:
            name = sac_file_name(env_id, level)
            if (out / name).exists() and name not in made and not plan.overwrite:
                raise DatasetError(
                    f"{out / name} exists and was not made by the run in {work} (pass "
                    "--overwrite to remake the suite)"
                )
