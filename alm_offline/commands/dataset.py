"""``alm dataset``: convert, collect, info, list, make-suite."""

from __future__ import annotations

import json

import click

from alm_offline.commands.options import DATASET_SOURCE, JSON, OVERWRITE, REF_SCORES, seed_option
from alm_offline.datasets.formats import FORMATS, INFERRED
from alm_offline.datasets.suite import EXPERT_FACTOR, SUITE_KINDS
from alm_offline.errors import AlmError


@click.group()
def dataset() -> None:
    """Offline datasets: convert, collect, info, list, make-suite."""


DATASET_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    default=None,
    help=f"Output format [default: {INFERRED}].",
)
DESTINATION_RULE = (
    "A .hdf5/.h5 destination is a D4RL-layout file. Anything else is a Minari dataset: a "
    "Minari id (NAMESPACE/NAME-vN) is written into the local Minari store "
    "($MINARI_DATASETS_PATH, else ~/.minari/datasets), unless it starts with ./, ../, / or ~ "
    "or already exists as a folder: then it is that folder."
)


@dataset.command(
    "convert",
    help=f"""Convert SRC (HDF5 file, Minari folder or Minari id) to DST.

{DESTINATION_RULE} Actions are written in the env's own units; without a known env, in their
stored units with their box (--action-low/--action-high, or the source's) declared.""",
)
@click.argument("src")
@click.argument("dst")
@DATASET_FORMAT
@REF_SCORES
@OVERWRITE
@DATASET_SOURCE
def dataset_convert(
    src,
    dst,
    fmt,
    ref_min,
    ref_max,
    overwrite,
    env_id,
    action_low,
    action_high,
    clip_actions,
    download,
):
    from alm_offline.datasets import convert, resolve_destination

    data = convert(
        src,
        dst,
        fmt,
        env_id,
        ref_min,
        ref_max,
        overwrite,
        clip_actions=clip_actions,
        download=download,
        action_low=action_low or (),
        action_high=action_high or (),
    )
    where, fmt = resolve_destination(dst, fmt)
    click.echo(f"wrote {where} ({fmt}): {data.num_episodes} episodes, {data.num_steps} steps")


@dataset.command(
    "collect",
    help=f"""Run a policy in ENV and save the transitions as a dataset.

{DESTINATION_RULE} Actions are recorded in the env's own units, with each episode's reset
seed.""",
)
@click.option("--env", "env_id", required=True, help="Gymnasium env id, e.g. HalfCheetah-v5.")
@click.option(
    "--policy",
    default="random",
    show_default=True,
    help="'random' (uniform actions) or the path of an ALM checkpoint.",
)
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Transitions to collect.")
@click.option("--episodes", type=click.IntRange(min=1), default=None, help="Episodes to collect.")
@click.option("--out", required=True, help="Destination: .hdf5/.h5 file, Minari id or folder.")
@DATASET_FORMAT
@click.option(
    "--noise",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="Std of Gaussian noise added to actions.",
)
@seed_option("Seed of the episodes' resets, the noise and the random policy.")
@OVERWRITE
def dataset_collect(env_id, policy, steps, episodes, out, fmt, noise, seed, overwrite) -> None:
    from alm_offline.datasets import collect_dataset
    from alm_offline.training.checkpoint import checkpoint_policy

    if (steps is None) == (episodes is None):
        raise AlmError("give exactly one of --steps and --episodes")
    data, written = collect_dataset(
        out,
        env_id,
        policy if policy == "random" else lambda env: checkpoint_policy(policy, env),
        steps=steps,
        episodes=episodes,
        fmt=fmt,
        noise=noise,
        seed=seed,
        overwrite=overwrite,
    )
    click.echo(
        f"collected {data.num_episodes} episodes, {data.num_steps} steps, "
        f"mean return {data.metadata['mean_return']:.2f}; wrote {written}"
    )


@dataset.command("info")
@click.argument("spec", metavar="DATASET")
@JSON
@DATASET_SOURCE
def dataset_info(spec, as_json, env_id, action_low, action_high, clip_actions, download) -> None:
    """Describe DATASET (HDF5 file, Minari folder or Minari id): sizes, returns, flags, scores.

    Without an env or a declared box the actions are described as stored, box unknown."""
    from alm_offline.datasets import load_dataset

    data = load_dataset(
        spec,
        download,
        env_id=env_id,
        clip_actions=clip_actions,
        action_low=action_low or (),
        action_high=action_high or (),
        require_box=False,
    )
    click.echo(json.dumps(data.summary(), indent=2) if as_json else data.describe(spec))


@dataset.command("list")
@click.argument("folder", required=False)
def dataset_list(folder: str | None) -> None:
    """List the local Minari store's datasets, and the HDF5 files in FOLDER if given."""
    from alm_offline.datasets import describe_listing, list_datasets

    click.echo(describe_listing(list_datasets(folder)))


SAC_ONLY = ("out", "python", "snapshot_every", "random_steps", "update_start", "eval_episodes")
ALM_ONLY = ("prefix", "expert_steps", "levels", "behaviour_config", "overrides")
DEFAULT_TRAIN_STEPS = {"alm": 20_000, "sac": 150_000}


@dataset.command("make-suite")
@click.option(
    "--behaviour",
    type=click.Choice(["alm", "sac"]),
    default="alm",
    show_default=True,
    help="The behaviour agent: ALM (configs/behaviour.yaml; Minari datasets in the store) or "
    "D4RL's recipe, d3rlpy's online SAC (D4RL-layout HDF5 files in --out).",
)
@click.option(
    "--envs",
    default="HalfCheetah-v5,Hopper-v5,Walker2d-v5",
    show_default=True,
    help="Comma-separated gymnasium env ids.",
)
@click.option("--prefix", default="alm-suite", show_default=True, help="Minari id namespace.")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Transitions of each random, medium and expert dataset.",
)
@click.option(
    "--train-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Env steps of the behaviour training: ALM's medium policy [default: 20000]; SAC's "
    "whole run, whose final policy is the expert [default: 150000].",
)
@click.option(
    "--expert-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Env steps the behaviour run trains on to, for the expert policy (more than "
    f"--train-steps) [default: {EXPERT_FACTOR} x --train-steps].",
)
@click.option(
    "--levels",
    default=",".join(SUITE_KINDS),
    show_default=True,
    help="Comma-separated levels to make (only expert and medium-expert train on to "
    "--expert-steps).",
)
@click.option(
    "--config",
    "behaviour_config",
    default="behaviour",
    show_default=True,
    help="Config of the behaviour training run (YAML file or bundled name).",
)
@click.option(
    "--work-dir",
    default=None,
    help="Where the behaviour runs and suite.json go [default: suites/alm-suite; with "
    "--behaviour sac, suites/sac: FAMILY-sac/ per env, its checkpoints and snapshots].",
)
@click.option("--out", default=None, help="sac: the folder of FAMILY-sac/ (files, suite.json).")
@click.option("--python", default=None, help="sac: the baselines' interpreter (d3rlpy).")
@click.option("--snapshot-every", type=int, default=10_000, help="sac: env steps a snapshot.")
@click.option("--random-steps", type=int, default=5_000, help="sac: uniform first actions.")
@click.option("--update-start", type=int, default=1_000, help="sac: updates from this step.")
@click.option("--eval-episodes", type=int, default=10, help="sac: episodes a snapshot.")
@seed_option("Seed of the random policy, the behaviour runs and the episodes.")
@OVERWRITE
@click.argument("overrides", nargs=-1)
@click.pass_context
def dataset_make_suite(ctx, behaviour, envs, train_steps, work_dir, seed, overwrite, **rest):
    """Make a D4RL-style suite per env. ALM (default): random, medium, medium-replay,
    expert, medium-expert as Minari datasets PREFIX/FAMILY/KIND-v0 in the local store;
    OVERRIDES (KEY=VALUE) go to the behaviour training runs (e.g. threads=1). SAC: D4RL's
    recipe (Fu et al. 2020), medium, medium-replay, expert and medium-expert as HDF5 files
    in --out/FAMILY-sac/; a killed run resumes to the same files."""
    env_ids = [env.strip() for env in envs.split(",") if env.strip()]
    wrong = SAC_ONLY if behaviour == "alm" else ALM_ONLY
    given = [name for name in wrong if _given(ctx, name)]
    if given:
        option = next(p for p in ctx.command.params if p.name == given[0])
        name = option.opts[0] if isinstance(option, click.Option) else "OVERRIDES"
        raise AlmError(f"{name} does not apply to --behaviour {behaviour}")
    train_steps = train_steps or DEFAULT_TRAIN_STEPS[behaviour]
    if behaviour == "sac":
        _make_sac_suite(env_ids, train_steps, work_dir or "suites/sac", seed, overwrite, rest)
        return
    from alm_offline.tools.make_suite import make_suite

    work_dir = work_dir or "suites/alm-suite"
    prefix = rest["prefix"]
    record = make_suite(
        env_ids,
        prefix=prefix,
        steps=rest["steps"],
        train_steps=train_steps,
        expert_steps=rest["expert_steps"],
        levels=[level.strip() for level in rest["levels"].split(",")],
        behaviour_config=rest["behaviour_config"],
        behaviour_overrides=rest["overrides"],
        work_dir=work_dir,
        seed=seed,
        overwrite=overwrite,
        log=click.echo,
    )
    made = [row["id"] for row in record["datasets"] if row["id"].startswith(f"{prefix}/")]
    click.echo(f"{len(made)} datasets in {prefix}/; their record: {work_dir}/suite.json")


def _given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was given on the command line (an argument: any value)."""
    if name == "overrides":
        return bool(ctx.params["overrides"])
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _make_sac_suite(env_ids, train_steps, work_dir, seed, overwrite, rest) -> None:
    from pathlib import Path

    from alm_offline.tools.make_suite import SacSuitePlan, make_sac_suite
    from alm_offline.tools.sweep.spec import default_python
    from alm_offline.training.sac_behaviour import SacSettings

    if rest["out"] is None:
        raise AlmError("--behaviour sac needs --out (the folder the suites go into)")
    plan = SacSuitePlan(
        env_ids=tuple(env_ids),
        out_dir=Path(rest["out"]),
        work_dir=Path(work_dir),
        python=rest["python"] or default_python(),
        sac=SacSettings(
            env_id="",
            steps=train_steps,
            seed=seed,
            snapshot_every=rest["snapshot_every"],
            random_steps=rest["random_steps"],
            update_start=rest["update_start"],
            eval_episodes=rest["eval_episodes"],
        ),
        steps=rest["steps"],
        overwrite=overwrite,
    )
    for path in make_sac_suite(plan, log=click.echo):
        click.echo(f"suite: {path}")
