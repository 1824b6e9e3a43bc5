"""``alm bench``: the speed and memory of ALM's update here (docs/speed.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from alm_offline.commands.options import JSON, device_option


@click.command("bench")
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
    from alm_offline.tools.update_speed import format_result, run_bench

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
