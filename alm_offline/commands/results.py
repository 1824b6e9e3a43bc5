"""What a run learned: ``alm config`` (a run's settings), ``alm eval``, ``alm plot``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from alm_offline.commands.options import CONFIG, JSON, device_option, seed_option
from alm_offline.config import EVAL_LATENTS
from alm_offline.tools.stats import BANDS


@click.command("config")
@CONFIG
@click.argument("overrides", nargs=-1)
def config_command(config, overrides) -> None:
    """Print a config (the defaults, or --config with OVERRIDES applied) as YAML, each key
    with its meaning: the keys' one documentation, taken from alm_offline/config.py."""
    from alm_offline.config import documented_yaml, load_config

    click.echo(documented_yaml(load_config(config, overrides)), nl=False)


@click.command("eval")
@click.argument("target", metavar="RUN_DIR|CHECKPOINT")
@click.option("--episodes", type=int, default=10, show_default=True)
@seed_option()
@click.option("--env", "env_id", default=None, help="Evaluate in another env with the same dims.")
@click.option("--video", default=None, metavar="PATH.mp4", help="Record the first episode.")
@device_option("cpu")
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


@click.command("plot")
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
    type=click.Choice(BANDS),
    default="ci",
    show_default=True,
    help="The band over seeds: the mean's 95% bootstrap interval (rliable), or +- std.",
)
def plot_command(run_dirs: tuple[str, ...], out: str, metric: str, paper: bool, band: str) -> None:
    """Learning curves of RUN_DIRs (or of the run dirs below folders): a line per method, its
    mean over seeds with a band."""
    from alm_offline.tools.plotting import plot_runs

    click.echo(plot_runs([Path(run) for run in run_dirs], Path(out), metric, paper, band))
