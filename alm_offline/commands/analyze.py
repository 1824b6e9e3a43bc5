"""``alm analyze``: the paper's analyses (appendix E)."""

from __future__ import annotations

import json

import click

from alm_offline.commands.options import JSON, device_option, options, seed_option


@click.group()
def analyze() -> None:
    """The paper's analyses (appendix E): bias of the bound, latent model accuracy; model KL."""


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


@analyze.command("model-kl")
@click.argument("sources", nargs=-1, required=True, metavar="RUN_DIR|CHECKPOINT...")
@click.option(
    "--data",
    default=None,
    help="Dataset to measure on [default: an offline run's own dataset, an online run's replay].",
)
@click.option(
    "--which",
    type=click.Choice(["latest", "best"]),
    multiple=True,
    default=("latest",),
    show_default=True,
    help="Checkpoint(s) of each run dir (repeat for both).",
)
@device_option("cpu")
@JSON
def analyze_model_kl_command(sources, data, which, device, as_json) -> None:
    """The latent model's KL split into what the model misses and the latents' span."""
    from alm_offline.tools.model_kl import as_dicts, describe, model_kl

    results = [model_kl(source, data, name, device) for source in sources for name in which]
    click.echo(json.dumps(as_dicts(results), indent=2) if as_json else describe(results))


@analyze.command("falls")
@click.argument("sources", nargs=-1, required=True, metavar="RUN_DIR|CHECKPOINT...")
@click.option("--data", default=None, help="Dataset to measure on [default: the run's own].")
@click.option(
    "--which",
    type=click.Choice(["latest", "best"]),
    default="latest",
    show_default=True,
    help="Checkpoint of each run dir.",
)
@device_option("cpu")
@JSON
def analyze_falls_command(sources, data, which, device, as_json) -> None:
    """What the model's K-step rollouts do past a real fall (docs/termination.md)."""
    from alm_offline.tools.falls import as_dict, falls_analysis

    results = [falls_analysis(source, data, which, device) for source in sources]
    if as_json:
        click.echo(json.dumps([as_dict(result) for result in results], indent=2))
    else:
        click.echo("\n\n".join(result.describe() for result in results))
