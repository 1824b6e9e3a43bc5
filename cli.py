"""The ``alm`` command line: parses arguments, loads config, calls one library function each."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from alm_offline.checkpoint import CheckpointError
from alm_offline.config import ConfigError, RunConfig, load_config
from alm_offline.datasets.episodes import DatasetError, DatasetWarning
from alm_offline.envs import EnvError, describe_env
from alm_offline.evaluate import EvalError, evaluate_checkpoint
from alm_offline.loggers import LoggerError, check_backends
from alm_offline.rundir import RunDirError, default_run_dir, prepare_new, write_text_atomic
from alm_offline.train import (
    NonFiniteError,
    load_offline_dataset,
    resolve_offline_config,
    train_offline,
    train_online,
)


class UserError(click.ClickException):
    """A one-line error for bad input; exits with status 2 and no traceback."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def alm() -> None:
    """Aligned Latent Models: online and offline model-based RL with one objective."""


def _load_config(config: str | None, overrides: tuple[str, ...]) -> RunConfig:
    try:
        return load_config(config, overrides)
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def _run_training(
    train, cfg: RunConfig, run_dir: Path, resume: bool, quiet: bool, **kwargs
) -> dict:
    """Call a training loop, turning expected failures into one-line errors."""
    try:
        return train(cfg, run_dir, resume=resume, quiet=quiet, **kwargs)
    except (EnvError, CheckpointError, RunDirError, ConfigError, DatasetError, LoggerError) as exc:
        raise UserError(str(exc)) from None
    except NonFiniteError as exc:
        raise click.ClickException(f"{exc} (run dir {run_dir})") from None
    except KeyboardInterrupt:
        click.echo(f"interrupted; continue with: alm train-... --resume {run_dir}", err=True)
        sys.exit(130)


def _start_run(
    config: str | None, overrides: tuple[str, ...], resume: str | None, overwrite: bool, prefix: str
) -> tuple[RunConfig, Path]:
    """The config and run dir of a new or resumed run (a resumed run keeps its config)."""
    if resume is not None:
        run_dir = Path(resume)
        stored = run_dir / "config.yaml"
        if not stored.is_file():
            raise UserError(f"'{run_dir}' is not a run directory (no config.yaml)")
        steps = [o for o in overrides if o.split("=", 1)[0] == "steps"]
        if len(steps) != len(overrides):
            raise UserError("only steps=N may be given with --resume (the run keeps its config)")
        if config is not None:
            raise UserError("--config cannot be combined with --resume")
        cfg = _load_config(str(stored), tuple(steps))
        try:
            check_backends(cfg.logger)
        except LoggerError as exc:
            raise UserError(str(exc)) from None
        return cfg, run_dir
    cfg = _load_config(config, overrides)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg, prefix)
    try:
        check_backends(cfg.logger)  # fail before anything is written
        describe_env(cfg.env)
        prepare_new(run_dir, cfg, overwrite)
    except (LoggerError, EnvError, RunDirError) as exc:
        raise UserError(str(exc)) from None
    return cfg, run_dir


def _print_summary(summary: dict) -> None:
    mean, std = summary.get("eval_return_mean"), summary.get("eval_return_std")
    result = "no evaluation" if mean is None else f"eval return {mean:.1f} +- {std:.1f}"
    if summary.get("normalized_score_mean") is not None:
        result += f" (normalised score {summary['normalized_score_mean']:.1f})"
    where = (
        f"on {summary['dataset']}"
        if summary.get("mode") == "offline"
        else f"({summary['env_steps']} env steps)"
    )
    click.echo(
        f"{summary['env']}: {result} after {summary['updates']} updates {where} "
        f"in {summary['wall_seconds']:.0f} s"
    )
    click.echo(f"run dir: {summary['run_dir']}")


TRAIN_OPTIONS = [
    click.option("--config", "config", default=None, help="YAML file, or online|quick|offline."),
    click.option(
        "--resume", default=None, metavar="RUN_DIR", help="Continue a run from its last checkpoint."
    ),
    click.option("--overwrite", is_flag=True, help="Replace a run already in run_dir."),
    click.option("--quiet", is_flag=True, help="No progress display."),
    click.argument("overrides", nargs=-1),
]


def train_options(func):
    for option in reversed(TRAIN_OPTIONS):
        func = option(func)
    return func


@alm.command("train-online")
@train_options
def train_online_command(
    config: str | None, resume: str | None, overwrite: bool, quiet: bool, overrides: tuple[str, ...]
) -> None:
    """Train ALM online on a gymnasium env. OVERRIDES are KEY=VALUE (e.g. env=Hopper-v5)."""
    cfg, run_dir = _start_run(config, overrides, resume, overwrite, prefix="")
    summary = _run_training(train_online, cfg, run_dir, resume is not None, quiet)
    _print_summary(summary)


@alm.command("train-offline")
@click.option(
    "--dataset",
    "dataset_spec",
    default=None,
    metavar="DATASET",
    help="Minari id, Minari dataset folder or D4RL-layout .hdf5 (default: the bundled one).",
)
@click.option(
    "--ref-min", type=float, default=None, help="Random-policy return (normalised scores)."
)
@click.option(
    "--ref-max", type=float, default=None, help="Expert-policy return (normalised scores)."
)
@click.option(
    "--clip-actions", is_flag=True, help="Clip dataset actions into the env's action box."
)
@train_options
def train_offline_command(
    dataset_spec: str | None,
    ref_min: float | None,
    ref_max: float | None,
    clip_actions: bool,
    config: str | None,
    resume: str | None,
    overwrite: bool,
    quiet: bool,
    overrides: tuple[str, ...],
) -> None:
    """Train ALM offline on a fixed dataset (paper appendix A.7); steps counts updates."""
    if resume is not None:
        if dataset_spec or ref_min is not None or ref_max is not None or clip_actions:
            raise UserError("--dataset/--ref-*/--clip-actions cannot change on --resume")
        cfg, run_dir = _start_run(config, overrides, resume, overwrite, prefix="offline-")
        summary = _run_training(train_offline, cfg, run_dir, True, quiet)
    else:
        extra = [f"dataset={dataset_spec}"] if dataset_spec else []
        extra += [f"eval.ref_min={ref_min}"] if ref_min is not None else []
        extra += [f"eval.ref_max={ref_max}"] if ref_max is not None else []
        extra += ["clip_actions=true"] if clip_actions else []
        cfg = _load_config(config or "offline", (*overrides, *extra))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DatasetWarning)
                data = load_offline_dataset(cfg)
        except (DatasetError, EnvError) as exc:
            raise UserError(str(exc)) from None
        cfg = resolve_offline_config(cfg, data)
        run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg, "offline-")
        try:
            check_backends(cfg.logger)
            prepare_new(run_dir, cfg, overwrite)
        except (RunDirError, LoggerError) as exc:
            raise UserError(str(exc)) from None
        summary = _run_training(train_offline, cfg, run_dir, False, quiet, dataset=data)
    _print_summary(summary)


# ---------------------------------------------------------------- dataset commands
DATASET_FORMATS = click.Choice(["minari", "hdf5"])


@alm.group()
def dataset() -> None:
    """Offline datasets: convert, collect, info, list."""


def _dataset_call(func, *args, **kwargs):
    """Call a dataset library function: bad input becomes a one-line ``UserError`` and
    dataset warnings print as ``warning: ...`` lines."""
    import warnings

    from alm_offline.datasets import DatasetError, DatasetWarning

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DatasetWarning)
            return func(*args, **kwargs)
    except (DatasetError, EnvError) as exc:
        raise UserError(str(exc)) from None
    finally:
        # shown once the recording has stopped: showing a warning while recording would
        # append it to the list being shown, for ever
        for warning in caught:
            if issubclass(warning.category, DatasetWarning):
                click.echo(f"warning: {warning.message}", err=True)
            else:
                warnings.showwarning(
                    warning.message, warning.category, warning.filename, warning.lineno
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

{DESTINATION_RULE} Actions are written in the env's own units.""",
)
@click.argument("src")
@click.argument("dst")
@click.option("--env", "env_id", default=None, help="Env id of the data (its action box and dims).")
@click.option(
    "--format",
    "fmt",
    type=DATASET_FORMATS,
    default=None,
    help="Output format [default: hdf5 for a .hdf5/.h5 DST, else minari].",
)
@click.option("--ref-min", type=float, default=None, help="Reference min score (random policy).")
@click.option("--ref-max", type=float, default=None, help="Reference max score (expert policy).")
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
@click.option(
    "--clip-actions", is_flag=True, help="Clip actions into the env's box (env units), don't fail."
)
@click.option("--download", is_flag=True, help="Download a Minari id missing from the local store.")
def dataset_convert(
    src: str,
    dst: str,
    env_id: str | None,
    fmt: str | None,
    ref_min: float | None,
    ref_max: float | None,
    overwrite: bool,
    clip_actions: bool,
    download: bool,
) -> None:
    from alm_offline.datasets import convert, resolve_destination

    data = _dataset_call(
        convert,
        src,
        dst,
        fmt,
        env_id,
        ref_min,
        ref_max,
        overwrite,
        clip_actions=clip_actions,
        download=download,
    )
    where, fmt = _dataset_call(resolve_destination, dst, fmt)
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
@click.option(
    "--out", "out", required=True, help="Destination: .hdf5/.h5 file, Minari id or folder."
)
@click.option(
    "--format",
    "fmt",
    type=DATASET_FORMATS,
    default=None,
    help="Output format [default: from --out's suffix].",
)
@click.option(
    "--noise",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="Std of Gaussian noise added to actions.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def dataset_collect(
    env_id: str,
    policy: str,
    steps: int | None,
    episodes: int | None,
    out: str,
    fmt: str | None,
    noise: float,
    seed: int,
    overwrite: bool,
) -> None:
    from alm_offline.datasets import check_writable, collect, random_policy, save_dataset
    from alm_offline.envs import describe_env

    if (steps is None) == (episodes is None):
        raise UserError("give exactly one of --steps and --episodes")
    fmt = _dataset_call(check_writable, out, fmt, overwrite)
    if policy == "random":
        act = random_policy(_dataset_call(describe_env, env_id).action_dim, seed)
    elif Path(policy).exists():
        import alm_offline.checkpoint as checkpoint

        try:
            act = checkpoint.load_policy(policy, device="cpu", deterministic=True)
        except checkpoint.CheckpointError as exc:
            raise UserError(str(exc)) from None
    else:
        raise UserError(f"--policy must be 'random' or a checkpoint path; {policy} does not exist")
    data = _dataset_call(
        collect,
        env_id,
        act,
        steps=steps,
        episodes=episodes,
        seed=seed,
        noise=noise,
        algorithm="random" if policy == "random" else f"alm ({policy})",
    )
    written = _dataset_call(save_dataset, data, out, fmt, overwrite)
    click.echo(
        f"collected {data.num_episodes} episodes, {data.num_steps} steps, "
        f"mean return {data.metadata['mean_return']:.2f}; wrote {written}"
    )


@dataset.command("info")
@click.argument("spec", metavar="DATASET")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.option("--env", "env_id", default=None, help="Env id of the data (its action box and dims).")
@click.option(
    "--clip-actions", is_flag=True, help="Clip actions into the env's box (env units), don't fail."
)
@click.option("--download", is_flag=True, help="Download a Minari id missing from the local store.")
def dataset_info(
    spec: str, as_json: bool, env_id: str | None, clip_actions: bool, download: bool
) -> None:
    """Describe DATASET (HDF5 file, Minari folder or Minari id): sizes, returns, flags, scores."""

    from alm_offline.datasets import load_dataset

    data = _dataset_call(load_dataset, spec, download, env_id=env_id, clip_actions=clip_actions)
    summary = data.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    returns, lengths = summary["returns"], summary["episode_length"]
    obs, act = summary["observations"], summary["actions"]
    rows = [
        ("dataset", spec),
        ("env", summary["env_id"] or "unknown"),
        ("episodes", summary["episodes"]),
        ("steps", summary["steps"]),
        ("observations", f"{tuple(obs['shape'])} {obs['dtype']}"),
        ("actions", f"{tuple(act['shape'])} {act['dtype']}"),
        ("action box", f"{summary['action_box']} (env units on disk)"),
        (
            "episode length",
            f"mean {lengths['mean']:.1f}, min {lengths['min']}, max {lengths['max']}",
        ),
        ("returns", ", ".join(f"{k} {v:.2f}" for k, v in returns.items())),
        ("terminations", summary["terminations"]),
        ("truncations", summary["truncations"]),
    ]
    if summary["ref_min_score"] is not None:
        rows.append(
            (
                "reference scores",
                f"min {summary['ref_min_score']}, max {summary['ref_max_score']} "
                f"(normalised mean return {summary['normalized_return_mean']:.2f})",
            )
        )
    rows += [(key, value) for key, value in summary["metadata"].items()]
    for key, value in rows:
        click.echo(f"{key + ':':<18}{value}")


@dataset.command("list")
@click.argument("folder", required=False)
def dataset_list(folder: str | None) -> None:
    """List the local Minari store's datasets, and the HDF5 files in FOLDER if given."""
    from alm_offline.datasets import list_datasets

    listing = _dataset_call(list_datasets, folder)
    click.echo(f"Minari store {listing['store']}: {len(listing['minari'])} datasets")
    for row in listing["minari"]:
        if "error" in row:
            click.echo(f"  {row['id']}  unreadable: {row['error']}")
            continue
        click.echo(
            f"  {row['id']}  {row['episodes']} episodes, {row['steps']} steps, "
            f"env {row['env_id'] or 'unknown'}"
        )
    if folder is not None:
        click.echo(f"HDF5 files in {folder}: {len(listing['hdf5'])}")
    for row in listing["hdf5"]:
        if "error" in row:
            click.echo(f"  {row['path']}  unreadable: {row['error']}")
        else:
            click.echo(
                f"  {row['path']}  {row['episodes']} episodes, {row['transitions']} transitions, "
                f"obs {row['obs_dim']}, action {row['action_dim']}, "
                f"env {row['env_id'] or 'unknown'}"
            )


# ------------------------------------------------------------ end dataset commands


@alm.command("bench")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the agent and the replay live.",
)
@click.option("--env", "env_id", default="HalfCheetah-v5", show_default=True, help="Env dims.")
@click.option(
    "--updates",
    type=click.IntRange(min=5),
    default=50,
    show_default=True,
    help="Timed updates (split into 5 windows).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", default=None, help="Also write the JSON result to this file.")
@click.option("--config", "config", default=None, help="YAML file (default: paper defaults).")
@click.argument("overrides", nargs=-1)
def bench_command(
    device: str,
    env_id: str,
    updates: int,
    as_json: bool,
    out: str | None,
    config: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Updates/s, FLOPs/update, matmul throughput, env steps/s and memory of ALM here.

    OVERRIDES are KEY=VALUE agent settings, e.g. agent.precision=bf16 threads=2.
    """

    from alm_offline.bench import format_result, run_bench

    cfg = _load_config(config, (f"env={env_id}", f"device={device}", *overrides))
    try:
        describe_env(cfg.env)
        result = run_bench(cfg, updates=updates)
    except (EnvError, ValueError) as exc:
        raise UserError(str(exc)) from None
    text = json.dumps(result.as_dict(), indent=2)
    click.echo(text if as_json else format_result(result))
    if out is not None:
        write_text_atomic(Path(out), text + "\n")


@alm.command("eval")
@click.argument("target", metavar="RUN_DIR|CHECKPOINT")
@click.option("--episodes", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--env", "env_id", default=None, help="Evaluate in another env with the same dims.")
@click.option("--video", default=None, metavar="PATH.mp4", help="Record the first episode.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def eval_command(
    target: str,
    episodes: int,
    seed: int,
    env_id: str | None,
    video: str | None,
    device: str,
    as_json: bool,
) -> None:
    """Deterministic evaluation of a run's latest checkpoint (or of a checkpoint file)."""
    try:
        report = evaluate_checkpoint(
            target, episodes=episodes, seed=seed, env_id=env_id, video=video, device=device
        )
    except (EvalError, CheckpointError, EnvError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    line = (
        f"{report.env}: return {report.return_mean:.1f} +- {report.return_std:.1f} "
        f"(min {report.return_min:.1f}, max {report.return_max:.1f}) "
        f"over {report.episodes} episodes"
    )
    if report.normalized_score_mean is not None:
        line += f"; normalised score {report.normalized_score_mean:.1f}"
    click.echo(line)
    if report.video:
        click.echo(f"video: {report.video} ({report.video_frames} frames)")


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
def plot_command(run_dirs: tuple[str, ...], out: str, metric: str, paper: bool) -> None:
    """Learning curves of RUN_DIRs (or of the run dirs below folders): mean +- std over seeds."""
    from alm_offline.plotting import (
        PlotError,
        find_run_dirs,
        group_curves,
        plot_curves,
        read_run_curve,
    )

    try:
        curves = [read_run_curve(run, metric) for run in find_run_dirs(map(Path, run_dirs))]
        plot_curves(curves, Path(out), metric, paper)
    except PlotError as exc:
        raise UserError(str(exc)) from None
    runs, envs = len(curves), len(group_curves(curves))
    click.echo(
        f"wrote {out} ({runs} run{'s' if runs != 1 else ''}, {envs} env{'s' if envs != 1 else ''})"
    )


# ---------------------------------------------------------------- analyze commands
@alm.group()
def analyze() -> None:
    """The paper's analyses (appendix E): bias of the lower bound, latent model accuracy."""


ANALYZE_OPTIONS = [
    click.argument("source", metavar="RUN_DIR|CHECKPOINT"),
    click.option("--seed", type=int, default=0, show_default=True, help="First episode's seed."),
    click.option("--out", "out_dir", default=None, help="Folder [default: RUN_DIR/analysis]."),
    click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="cpu",
        show_default=True,
        help="Where the agent runs.",
    ),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
]


def analyze_options(func):
    for option in reversed(ANALYZE_OPTIONS):
        func = option(func)
    return func


def _analyze_call(func, *args, **kwargs):
    """Run an analysis; bad input becomes a one-line ``UserError``."""
    from alm_offline.analysis import AnalysisError
    from alm_offline.plotting import PlotError

    try:
        return func(*args, **kwargs)
    except (CheckpointError, EnvError, AnalysisError, PlotError) as exc:
        raise UserError(str(exc)) from None


def _print_analysis(payload: dict, paths: dict, text: str, as_json: bool) -> None:
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
@analyze_options
def analyze_bias_command(
    episodes: int | None,
    min_states: int,
    max_start_steps: int,
    source: str,
    seed: int,
    out_dir: str | None,
    device: str,
    as_json: bool,
) -> None:
    """Bias of the K-step bound against Monte-Carlo returns at visited states (Fig. 8)."""
    from alm_offline.analysis import analyze_bias

    payload, paths, result = _analyze_call(
        analyze_bias,
        source,
        out_dir,
        device=device,
        episodes=episodes,
        max_start_steps=max_start_steps,
        min_states=min_states,
        seed=seed,
    )
    _print_analysis(payload, paths, result.describe(), as_json)


@analyze.command("rollout")
@click.option("--horizon", type=int, default=50, show_default=True, help="Steps to unroll.")
@click.option(
    "--start", type=int, default=0, show_default=True, help="Trajectory step to unroll from."
)
@analyze_options
def analyze_rollout_command(
    horizon: int,
    start: int,
    source: str,
    seed: int,
    out_dir: str | None,
    device: str,
    as_json: bool,
) -> None:
    """Latent model unrolled along a real trajectory vs the encoder's latents (Fig. 7)."""
    from alm_offline.analysis import analyze_rollout

    payload, paths, result = _analyze_call(
        analyze_rollout, source, out_dir, device=device, horizon=horizon, seed=seed, start=start
    )
    _print_analysis(payload, paths, result.describe(), as_json)


# ------------------------------------------------------------ end analyze commands


# ------------------------------------------------------------------------ sweep command
def _comma_list(value: str, option: str) -> list[str]:
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise UserError(f"{option} must be a comma-separated list, got '{value}'")
    return items


@alm.command("sweep")
@click.option("--config", "config", required=True, help="YAML file, or online|quick|offline.")
@click.option("--envs", required=True, help="Comma-separated env ids, e.g. Hopper-v5,Walker2d-v5.")
@click.option("--seeds", required=True, help="Comma-separated integer seeds, e.g. 1,2,3.")
@click.option("--address", default=None, help="Ray cluster host:port or auto [default: local].")
@click.option("--gpus-per-trial", type=float, default=0.0, show_default=True)
@click.option("--cpus-per-trial", type=float, default=1.0, show_default=True)
@click.option("--out", default=None, help="Sweep folder [default: sweeps/<name>-<timestamp>].")
@click.option("--name", default=None, help="Sweep name [default: the config's file stem].")
@click.option("--overwrite", is_flag=True, help="Replace a sweep (and its runs) already in --out.")
@click.argument("overrides", nargs=-1)
def sweep_command(
    config: str,
    envs: str,
    seeds: str,
    address: str | None,
    gpus_per_trial: float,
    cpus_per_trial: float,
    out: str | None,
    name: str | None,
    overwrite: bool,
    overrides: tuple[str, ...],
) -> None:
    """Train every env x seed as a Ray task; write a Table-1-style summary and curves.

    OVERRIDES are KEY=VALUE applied to every trial. Exits 1 when some trial failed.
    """
    from alm_offline.sweep import SweepError, run_sweep

    env_ids = _comma_list(envs, "--envs")
    try:
        seed_list = [int(s) for s in _comma_list(seeds, "--seeds")]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got '{seeds}'") from None
    try:
        result = run_sweep(
            config,
            env_ids,
            seed_list,
            overrides,
            address=address,
            gpus_per_trial=gpus_per_trial,
            cpus_per_trial=cpus_per_trial,
            out=Path(out) if out is not None else None,
            name=name,
            overwrite=overwrite,
            report=click.echo,
        )
    except (SweepError, ConfigError, EnvError) as exc:
        raise UserError(str(exc)) from None
    click.echo("")
    click.echo(result.table, nl=False)
    for note in result.notes:
        click.echo(f"warning: {note}", err=True)
    click.echo(f"sweep folder: {result.out}")
    if not result.all_ok:
        click.echo(f"{len(result.failed)} of {len(result.trials)} trials failed", err=True)
        click.get_current_context().exit(1)


# -------------------------------------------------------------------- end sweep command


def main() -> None:
    """Console-script entry point."""
    alm(prog_name="alm")


if __name__ == "__main__":
    sys.exit(main())
