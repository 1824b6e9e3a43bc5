"""The ``alm`` command line: parses arguments and calls one library function per command.

Errors are handled in one place: every user mistake the library finds is an ``AlmError``,
which ``AlmGroup`` shows as one ``error: ...`` line with its exit status (2); ``AlmWarning``s
print as ``warning: ...`` lines. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import click

from alm_offline.config import (
    BASELINE_METHODS,
    BUNDLED_CONFIGS,
    DEVICES,
    EVAL_LATENTS,
    METHODS,
    check_device_name,
)
from alm_offline.datasets.formats import FORMATS, INFERRED
from alm_offline.datasets.suite import EXPERT_FACTOR, SUITE_KINDS
from alm_offline.errors import AlmError, AlmWarning, printable

# ------------------------------------------------------------------- errors, warnings


class UserError(click.ClickException):
    """An ``AlmError`` as click shows it: ``error: MESSAGE`` on stderr, no traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {printable(self.format_message())}", err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, AlmWarning):
        click.echo(f"warning: {printable(message)}", err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class AlmGroup(click.Group):
    """The ``alm`` group: ``AlmError`` and click's usage errors -> one ``error:`` line,
    ``AlmWarning`` -> ``warning:``."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """click's ``main``, with its usage errors (unknown option, bad choice, missing
        argument) shown as one ``error:`` line that names the command's --help."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            click.echo(f"error: {printable(exc.format_message())}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context):
        with warnings.catch_warnings():
            warnings.simplefilter("always", AlmWarning)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except AlmError as exc:
                raise UserError(str(exc), exc.exit_code) from None


@click.group(cls=AlmGroup, context_settings={"help_option_names": ["-h", "--help"]})
def alm() -> None:
    """Aligned Latent Models: online and offline model-based RL with one objective."""


# ----------------------------------------------------------------- shared option blocks


def options(*decorators: Callable) -> Callable:
    """Apply several click decorators as one (first listed = first in --help)."""

    def apply(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
OVERWRITE = click.option("--overwrite", is_flag=True, help="Replace what is already there.")
REF_SCORES = options(
    click.option("--ref-min", type=float, default=None, help="Random-policy return (scores)."),
    click.option("--ref-max", type=float, default=None, help="Expert-policy return (scores)."),
)


class ActionBound(click.ParamType):
    """``--action-low``/``--action-high``: one number (for every dim) or comma-separated
    numbers (one per dim), each finite; their count and low < high are checked against the
    data (``datasets.action_box.box_from_bounds``)."""

    name = "bound"

    def convert(self, value, param, ctx) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        try:
            bounds = tuple(float(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"'{value}' is not a number or comma-separated numbers", param, ctx)
        if not all(math.isfinite(bound) for bound in bounds):
            self.fail(f"'{value}' holds a value that is not finite", param, ctx)
        return bounds


ACTION_BOX = options(
    click.option(
        "--action-low",
        type=ActionBound(),
        default=None,
        metavar="LOW[,LOW...]",
        help="Low bound of the box the actions are stored in: one value for every dim or one "
        "per dim (with --action-high; for data whose env is unknown, or to check the file's).",
    ),
    click.option(
        "--action-high",
        type=ActionBound(),
        default=None,
        metavar="HIGH[,HIGH...]",
        help="High bound of that box, likewise.",
    ),
)
DATASET_SOURCE = options(
    click.option("--env", "env_id", default=None, help="Env id of the data (action box, dims)."),
    ACTION_BOX,
    click.option("--clip-actions", is_flag=True, help="Clip actions into their box, don't fail."),
    click.option("--download", is_flag=True, help="Download a Minari id missing locally."),
)
DATASET_OPTION = click.option(
    "--dataset",
    "dataset_spec",
    default=None,
    metavar="DATASET",
    help="Minari id, Minari dataset folder or D4RL-layout .hdf5 (default: the bundled one).",
)
TRAIN = options(
    click.option(
        "--config",
        "config",
        default=None,
        help=f"YAML file, or a bundled config: {', '.join(BUNDLED_CONFIGS)}.",
    ),
    click.option("--resume", default=None, metavar="RUN_DIR", help="Continue a run."),
    click.option("--overwrite", is_flag=True, help="Replace a run already in run_dir."),
    click.option("--quiet", is_flag=True, help="No progress display."),
    click.argument("overrides", nargs=-1),
)


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_device_name(value)
    except AlmError as exc:
        raise click.BadParameter(str(exc)) from None


def device_option(default: str) -> Callable:
    """``--device``, its choices the config's (``config.DEVICES``: cuda:N among them)."""
    return click.option(
        "--device",
        default=default,
        show_default=True,
        metavar="|".join(DEVICES),
        callback=_device,
        help="Where the agent runs.",
    )


def seed_option(help: str = "Seed of the first episode.") -> Callable:
    return click.option("--seed", type=int, default=0, show_default=True, help=help)


# --------------------------------------------------------------------------- training


def _train(start, quiet: bool) -> None:
    """Train a started run; Ctrl-C says how to resume it."""
    from alm_offline.training.rundir import describe_summary
    from alm_offline.training.start import train

    try:
        summary = train(start, quiet=quiet)
    except KeyboardInterrupt:
        click.echo(
            f"interrupted; continue with: alm train-{start.mode} --resume {start.run_dir}",
            err=True,
        )
        sys.exit(130)
    click.echo(describe_summary(summary))


@alm.command("train-online")
@TRAIN
def train_online_command(config, resume, overwrite, quiet, overrides) -> None:
    """Train ALM online on a gymnasium env. OVERRIDES are KEY=VALUE (e.g. env=Hopper-v5)."""
    from alm_offline.training.start import start_online

    _train(start_online(config, overrides, resume=resume, overwrite=overwrite), quiet)


OFFLINE_DATA = options(
    DATASET_OPTION,
    REF_SCORES,
    ACTION_BOX,
    click.option("--clip-actions", is_flag=True, help="Clip dataset actions into their box."),
)


@alm.command("train-offline")
@OFFLINE_DATA
@TRAIN
def train_offline_command(
    dataset_spec,
    ref_min,
    ref_max,
    action_low,
    action_high,
    clip_actions,
    config,
    resume,
    overwrite,
    quiet,
    overrides,
) -> None:
    """Train ALM offline on a fixed dataset (paper appendix A.7); steps counts updates.

    A dataset that names no env (and no env=ENV_ID) trains with evaluation off (eval.every=0);
    its actions need a known box: the file's, or the one --action-low and --action-high give."""
    from alm_offline.training.start import start_offline

    extra = _offline_overrides(
        dataset_spec, ref_min, ref_max, action_low, action_high, clip_actions
    )
    if resume is not None and extra:
        raise AlmError("--dataset/--ref-*/--action-*/--clip-actions cannot change on --resume")
    _train(start_offline(config, (*overrides, *extra), resume=resume, overwrite=overwrite), quiet)


def _offline_overrides(
    dataset_spec, ref_min, ref_max, action_low, action_high, clip_actions
) -> list[str]:
    """The offline options as KEY=VALUE overrides."""
    if dataset_spec is not None and not dataset_spec.strip():
        raise UserError("--dataset is empty: give a Minari id, a Minari folder or an .hdf5 file")
    extra = [f"dataset={dataset_spec}"] if dataset_spec is not None else []
    extra += [f"eval.ref_min={ref_min}"] if ref_min is not None else []
    extra += [f"eval.ref_max={ref_max}"] if ref_max is not None else []
    for key, bounds in (("action_low", action_low), ("action_high", action_high)):
        extra += [f"{key}=[{','.join(map(repr, bounds))}]"] if bounds is not None else []
    return extra + (["clip_actions=true"] if clip_actions else [])


@alm.command("baseline")
@click.argument("algo", type=click.Choice(BASELINE_METHODS), metavar="ALGO")
@OFFLINE_DATA
@click.option("--config", "config", default=None, help="YAML file, or offline (the default).")
@click.option("--overwrite", is_flag=True, help="Replace a run already in run_dir.")
@click.option("--quiet", is_flag=True, help="No per-evaluation lines.")
@click.argument("overrides", nargs=-1)
def baseline_command(
    algo,
    dataset_spec,
    ref_min,
    ref_max,
    action_low,
    action_high,
    clip_actions,
    config,
    overwrite,
    quiet,
    overrides,
) -> None:
    """Train d3rlpy's ALGO (its D4RL settings) on a dataset, into a run dir like
    train-offline's. OVERRIDES are KEY=VALUE (steps, seed, eval.every, eval.episodes, ...).
    Needs the baselines extra: pip install 'alm-offline[baselines]'."""
    from alm_offline.training.start import start_offline

    extra = _offline_overrides(
        dataset_spec, ref_min, ref_max, action_low, action_high, clip_actions
    )
    extra.append(f"method={algo}")
    _train(start_offline(config, (*overrides, *extra), overwrite=overwrite), quiet)


# --------------------------------------------------------------------------- datasets
@alm.group()
def dataset() -> None:
    """Offline datasets: convert, collect, info, list."""


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


@dataset.command("make-suite")
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
    default=20_000,
    show_default=True,
    help="Env steps of each behaviour (medium) policy's online training.",
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
    default="suites/alm-suite",
    show_default=True,
    help="Where the behaviour runs and suite.json go.",
)
@seed_option("Seed of the random policy, the behaviour runs and the episodes.")
@OVERWRITE
@click.argument("overrides", nargs=-1)
def dataset_make_suite(
    envs,
    prefix,
    steps,
    train_steps,
    expert_steps,
    levels,
    behaviour_config,
    work_dir,
    seed,
    overwrite,
    overrides,
) -> None:
    """Make a D4RL-style suite per env (random, medium, medium-replay, expert,
    medium-expert) as Minari datasets PREFIX/FAMILY/KIND-v0 in the local store. OVERRIDES
    (KEY=VALUE) go to the behaviour training runs (e.g. threads=1)."""
    from alm_offline.tools.suite import make_suite

    env_ids = [env.strip() for env in envs.split(",") if env.strip()]
    record = make_suite(
        env_ids,
        prefix=prefix,
        steps=steps,
        train_steps=train_steps,
        expert_steps=expert_steps,
        levels=[level.strip() for level in levels.split(",")],
        behaviour_config=behaviour_config,
        behaviour_overrides=overrides,
        work_dir=work_dir,
        seed=seed,
        overwrite=overwrite,
        log=click.echo,
    )
    made = [row["id"] for row in record["datasets"] if row["id"].startswith(f"{prefix}/")]
    click.echo(f"{len(made)} datasets in {prefix}/; their record: {work_dir}/suite.json")


# ------------------------------------------------------------------ running an agent
@alm.command("bench")
@device_option("auto")
@click.option("--env", "env_id", default="HalfCheetah-v5", show_default=True, help="Env dims.")
@click.option(
    "--updates",
    type=click.IntRange(min=5),
    default=50,
    show_default=True,
    help="Timed updates (split into 5 windows).",
)
@JSON
@click.option("--out", default=None, help="Also write the JSON result to this file.")
@click.option("--config", "config", default=None, help="YAML file (default: paper defaults).")
@click.option(
    "--compare-fused",
    is_flag=True,
    help="Measure the eager update, then the fused one (agent.compile), in this one run.",
)
@click.option(
    "--profile", is_flag=True, help="Also print ops (CPU) or kernels (CUDA) per update, top ops."
)
@click.option(
    "--seeds",
    "seed_counts",
    default=None,
    help="Numbers of seeds trained in one process, e.g. 1,2,5,10: seed-updates/s, seed "
    "env-steps/s and memory for each, against N=1's (docs/seeds.md).",
)
@click.argument("overrides", nargs=-1)
def bench_command(
    device, env_id, updates, as_json, out, config, compare_fused, profile, seed_counts, overrides
) -> None:
    """Updates/s, FLOPs/update, matmul throughput, env steps/s and memory of ALM here.

    OVERRIDES are KEY=VALUE agent settings, e.g. agent.precision=bf16 threads=2; the update
    is fused with agent.compile=on (or --compare-fused), eager otherwise. With --seeds, the
    table of N seeds in one process instead.
    """
    from alm_offline.config import load_config
    from alm_offline.runtime.envs import describe_env
    from alm_offline.runtime.files import check_output_file, write_text_atomic
    from alm_offline.tools.bench import format_result, run_bench

    cfg = load_config(config, (f"env={env_id}", f"device={device}", *overrides))
    describe_env(cfg.env)
    if out is not None:
        check_output_file(Path(out), "--out")
    if seed_counts is not None:
        from alm_offline.tools.bench_seeds import format_seed_result, run_seed_bench

        counts = parse_seed_counts(seed_counts, compare_fused, profile)
        seeded = run_seed_bench(cfg, counts, updates=updates)
        text = json.dumps(seeded.as_dict(), indent=2)
        click.echo(text if as_json else format_seed_result(seeded))
    else:
        result = run_bench(cfg, updates=updates, compare_fused=compare_fused, profile=profile)
        text = json.dumps(result.as_dict(), indent=2)
        click.echo(text if as_json else format_result(result))
    if out is not None:
        write_text_atomic(Path(out), text + "\n")


def parse_seed_counts(text: str, compare_fused: bool, profile: bool) -> list[int]:
    """``--seeds 1,2,5``'s numbers (each >= 1, distinct), refused with the flags it cannot
    be combined with."""
    if compare_fused or profile:
        raise click.UsageError("--seeds cannot be combined with --compare-fused or --profile")
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"'{text}' is not comma-separated integers", param_hint="--seeds"
        ) from None
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise click.BadParameter(f"'{text}': give distinct numbers >= 1", param_hint="--seeds")
    return counts


@alm.command("config")
@click.option("--config", "config", default=None, help="YAML file, or a bundled config name.")
@click.argument("overrides", nargs=-1)
def config_command(config, overrides) -> None:
    """Print a config (the defaults, or --config with OVERRIDES applied) as YAML, each key
    with its meaning: the keys' one documentation, taken from alm_offline/config.py."""
    from alm_offline.config import documented_yaml, load_config

    click.echo(documented_yaml(load_config(config, overrides)), nl=False)


@alm.command("eval")
@click.argument("target", metavar="RUN_DIR|CHECKPOINT")
@click.option("--episodes", type=int, default=10, show_default=True)
@seed_option()
@click.option("--env", "env_id", default=None, help="Evaluate in another env with the same dims.")
@click.option("--video", default=None, metavar="PATH.mp4", help="Record the first episode.")
@click.option("--device", default="cpu", show_default=True, help="Where the agent runs.")
@click.option("--best", is_flag=True, help="The run's best-evaluated checkpoint (best.pt).")
@click.option(
    "--latent",
    type=click.Choice(EVAL_LATENTS),
    default=None,
    help="z the policy acts on: the encoder's mean or a sample (default: the run's eval.latent).",
)
@JSON
def eval_command(target, episodes, seed, env_id, video, device, best, latent, as_json) -> None:
    """Deterministic evaluation of a run's latest checkpoint (or of a checkpoint file)."""
    from alm_offline.tools.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(
        target,
        episodes=episodes,
        seed=seed,
        env_id=env_id,
        video=video,
        device=device,
        which="best" if best else "latest",
        latent=latent,
    )
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.describe())


@alm.command("plot")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...")
@click.option("--out", default="curves.png", show_default=True, help="Image file (.png/.pdf/.svg).")
@click.option(
    "--metric",
    default="return_mean",
    show_default=True,
    help="A key of eval.jsonl or metrics.jsonl rows, e.g. loss/critic.",
)
@click.option("--paper", is_flag=True, help="Overlay the paper's published ALM(3) curve.")
@click.option(
    "--band",
    type=click.Choice(("ci", "std")),
    default="ci",
    show_default=True,
    help="The band over seeds: the mean's 95% bootstrap interval (rliable), or +- std.",
)
def plot_command(run_dirs: tuple[str, ...], out: str, metric: str, paper: bool, band: str) -> None:
    """Learning curves of RUN_DIRs (or of the run dirs below folders): a line per method, its
    mean over seeds with a band."""
    from alm_offline.tools.plotting import plot_runs

    click.echo(plot_runs([Path(run) for run in run_dirs], Path(out), metric, paper, band))


# --------------------------------------------------------------------------- analyses
@alm.group()
def analyze() -> None:
    """The paper's analyses (appendix E): bias of the lower bound, latent model accuracy."""


ANALYZE = options(
    click.argument("source", metavar="RUN_DIR|CHECKPOINT"),
    seed_option(),
    click.option("--out", "out_dir", default=None, help="Folder [default: RUN_DIR/analysis]."),
    device_option("cpu"),
    JSON,
)


def _print_analysis(report, as_json: bool) -> None:
    payload, paths, text = report
    click.echo(json.dumps(payload, indent=2) if as_json else text)
    if not as_json:
        click.echo(f"wrote {paths['json']} and {paths['png']}")


@analyze.command("bias")
@click.option(
    "--episodes",
    type=int,
    default=None,
    help="Run exactly this many episodes [default: until --min-states states].",
)
@click.option(
    "--min-states", type=int, default=1000, show_default=True, help="States to collect at least."
)
@click.option(
    "--max-start-steps",
    type=int,
    default=350,
    show_default=True,
    help="Use the states of each episode's first N steps.",
)
@ANALYZE
def analyze_bias_command(
    episodes, min_states, max_start_steps, source, seed, out_dir, device, as_json
) -> None:
    """Bias of the K-step bound against Monte-Carlo returns at visited states (Fig. 8)."""
    from alm_offline.tools.analysis import analyze_bias

    _print_analysis(
        analyze_bias(
            source,
            out_dir,
            device=device,
            episodes=episodes,
            max_start_steps=max_start_steps,
            min_states=min_states,
            seed=seed,
        ),
        as_json,
    )


@analyze.command("rollout")
@click.option("--horizon", type=int, default=50, show_default=True, help="Steps to unroll.")
@click.option(
    "--start", type=int, default=0, show_default=True, help="Trajectory step to unroll from."
)
@ANALYZE
def analyze_rollout_command(horizon, start, source, seed, out_dir, device, as_json) -> None:
    """Latent model unrolled along a real trajectory vs the encoder's latents (Fig. 7)."""
    from alm_offline.tools.analysis import analyze_rollout

    _print_analysis(
        analyze_rollout(source, out_dir, device=device, horizon=horizon, seed=seed, start=start),
        as_json,
    )


# ------------------------------------------------------------------------------ sweep
RESUME_KEEPS = ("--address", "--python", "--cpus-per-trial", "--gpus-per-trial")


@alm.command("sweep")
@click.option(
    "--config",
    "config",
    default=None,
    help=f"YAML file, or a bundled config: {', '.join(BUNDLED_CONFIGS)}.",
)
@click.option("--envs", default=None, help="Online: comma-separated env ids, e.g. Hopper-v5.")
@click.option(
    "--datasets", default=None, help="Offline: comma-separated Minari ids, folders or .hdf5."
)
@click.option(
    "--methods",
    default=None,
    help=f"Offline: comma-separated methods among {', '.join(METHODS)} [default: alm].",
)
@click.option("--seeds", default=None, help="Comma-separated integer seeds, e.g. 1,2,3.")
@click.option(
    "--seeds-per-trial",
    type=int,
    default=None,
    metavar="K",
    help="ALM: train K seeds of a cell in one process (one trial, seeds=...), in chunks of K "
    "in the order given; baselines always train one seed per trial [default: all the seeds "
    "of a cell in one trial].",
)
@click.option(
    "--python",
    "python",
    default=None,
    help="The interpreter that runs the trials (for baselines, a venv with d3rlpy) "
    "[default: this one].",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster host:port or auto [default: local]. Join only a cluster you trust: "
    "it runs this code and sends the results back as pickles.",
)
@click.option("--gpus-per-trial", type=float, default=None, help="[default: 0]")
@click.option("--cpus-per-trial", type=float, default=None, help="[default: 1]")
@click.option("--out", default=None, help="Sweep folder [default: sweeps/<name>-<timestamp>].")
@click.option("--name", default=None, help="Sweep name [default: the config's file stem].")
@click.option("--overwrite", is_flag=True, help="Replace a sweep (and its runs) already in --out.")
@click.option(
    "--resume",
    default=None,
    metavar="OUT",
    help="Continue the sweep in OUT: finished trials are kept, interrupted ones continue "
    f"from their last checkpoint, the rest run. Only {', '.join(RESUME_KEEPS)} may be given "
    "with it.",
)
@click.argument("overrides", nargs=-1)
def sweep_command(
    config,
    envs,
    datasets,
    methods,
    seeds,
    seeds_per_trial,
    python,
    address,
    gpus_per_trial,
    cpus_per_trial,
    out,
    name,
    overwrite,
    resume,
    overrides,
) -> None:
    """Train a grid as Ray tasks and write a results table and curves: online, every env x
    seed (--envs, Table-1 style); offline, every dataset x method x seed (--datasets, D4RL
    style, offline ALM beside d3rlpy's baselines). docs/sweeps.md has the details.

    OVERRIDES are KEY=VALUE applied to every trial. Exits 1 when some trial failed.
    """
    from alm_offline.tools.sweep import (
        SweepError,
        SweepSpec,
        parse_list,
        parse_methods,
        parse_seeds,
        resume_sweep,
        run_sweep,
    )

    resources = dict(address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
    if resume is not None:
        per_trial = seeds_per_trial is not None
        grid = (config, envs, datasets, methods, seeds, per_trial, out, name, overwrite, overrides)
        if any(grid):
            raise SweepError(
                f"--resume takes the grid from OUT/sweep.json; only {', '.join(RESUME_KEEPS)} "
                "may be given with it"
            )
        result = resume_sweep(Path(resume), python=python, report=click.echo, **resources)
    else:
        if (envs is None) == (datasets is None):
            raise SweepError("give --envs (an online sweep) or --datasets (an offline one)")
        if seeds is None:
            raise SweepError("give --seeds, e.g. --seeds 1,2,3")
        online = envs is not None
        spec = SweepSpec(
            mode="online" if online else "offline",
            name=name or (Path(config).stem if config else "offline"),
            config=config,
            cells=parse_list(envs if online else datasets, "--envs" if online else "--datasets"),
            methods=parse_methods(methods or "alm"),
            seeds=parse_seeds(seeds),
            seeds_per_trial=seeds_per_trial,
            overrides=list(overrides),
            python=str(Path(python or sys.executable).absolute()),  # a venv's symlink is kept
            **{k: v for k, v in resources.items() if v is not None},
        )
        out_path = Path(out) if out is not None else None
        result = run_sweep(spec, out_path, overwrite=overwrite, report=click.echo)
    click.echo("")
    click.echo(result.table, nl=False)
    for note in result.notes:
        click.echo(f"warning: {note}", err=True)
    click.echo(f"sweep folder: {result.out}")
    if not result.all_ok:
        click.echo(f"{len(result.failed)} of {len(result.trials)} trials failed", err=True)
        click.get_current_context().exit(1)


# ------------------------------------------------------------------------------- grids
@alm.group()
def grid() -> None:
    """A results grid that lands cell by cell: run its cells, rebuild its table and plots."""


@grid.command("run")
@click.argument("grid_file", metavar="GRID.yaml")
@click.option("--work-dir", default=None, help="Cells' sweep folders [default: sweeps/grid-NAME].")
@click.option("--results", default=None, help="Cell files' folder [default: beside GRID.yaml].")
@click.option("--data", default=None, help="The datasets' folder [default: the grid file's].")
@click.option("--python", "python", default=None, help="The baselines' interpreter (d3rlpy).")
@click.option("--only", default=None, help="Comma-separated cells (DATASET--VARIANT) to run.")
@click.option("--commit", is_flag=True, help="git-commit each cell file as soon as it is written.")
def grid_run_command(
    grid_file: str,
    work_dir: str | None,
    results: str | None,
    data: str | None,
    python: str | None,
    only: str | None,
    commit: bool,
) -> None:
    """Train GRID.yaml's cells without a file yet, in order (interrupted ones resume)."""
    from alm_offline.tools.grid import load_grid, run_grid

    spec = load_grid(grid_file, data)
    written = run_grid(
        spec,
        Path(work_dir or f"sweeps/grid-{spec.name}"),
        results=Path(results) if results else None,
        python=python,
        only=[part.strip() for part in only.split(",")] if only else (),
        commit=commit,
        echo=click.echo,
    )
    click.echo(f"{len(written)} cell(s) written; the rest were there already")


@grid.command("report")
@click.argument("grid_file", metavar="GRID.yaml")
@click.option("--readme", default=None, help="A file whose grid section to rebuild (README.md).")
@click.option("--data", default=None, help="The datasets' folder [default: the grid file's].")
def grid_report_command(grid_file: str, readme: str | None, data: str | None) -> None:
    """Rebuild GRID.yaml's results.md, curves.png (and a README's section) from its cells."""
    from alm_offline.tools.grid import load_grid
    from alm_offline.tools.grid_report import grid_report

    for path in grid_report(load_grid(grid_file, data), Path(readme) if readme else None):
        click.echo(f"wrote {path}")


def exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM as SIGINT is: an exception, so every ``finally`` runs (a checkpoint half
    written removes its temporary file) before the process exits with 128 + signum."""
    raise SystemExit(128 + signum)


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    alm(prog_name="alm")


if __name__ == "__main__":
    sys.exit(main())
