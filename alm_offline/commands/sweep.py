"""``alm sweep``: a grid of trials as Ray tasks (docs/sweeps.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from alm_offline.commands.options import CONFIG
from alm_offline.config import METHODS, OFFLINE, ONLINE

RESUME_KEEPS = ("--address", "--python", "--cpus-per-trial", "--gpus-per-trial")
CELL_FLAGS = {ONLINE.name: "--envs", OFFLINE.name: "--datasets"}  # each mode's cells option


@click.command("sweep")
@CONFIG
@click.option("--envs", default=None, help="Online: comma-separated env ids, e.g. Hopper-v5.")
@click.option(
    "--datasets", default=None, help="Offline: comma-separated Minari ids, folders or .hdf5."
)
@click.option(
    "--methods",
    default=None,
    help=f"Comma-separated methods among {', '.join(METHODS)} (online: alm, sac) [default: alm].",
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
def sweep_command(resume, python, address, gpus_per_trial, cpus_per_trial, **grid: Any) -> None:
    """Train a grid as Ray tasks and write a results table and curves: online, every env x
    seed (--envs, Table-1 style); offline, every dataset x method x seed (--datasets, D4RL
    style, offline ALM beside d3rlpy's baselines). docs/sweeps.md has the details.

    OVERRIDES are KEY=VALUE applied to every trial. Exits 1 when some trial failed.
    """
    from alm_offline.tools.sweep import SweepError, resume_sweep, run_sweep

    resources = dict(address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
    if resume is not None:
        if any(v is not None and v is not False and v != () for v in grid.values()):
            raise SweepError(
                f"--resume takes the grid from OUT/sweep.json; only {', '.join(RESUME_KEEPS)} "
                "may be given with it"
            )
        result = resume_sweep(Path(resume), python=python, report=click.echo, **resources)
    else:
        spec = _new_spec(grid, python, resources)
        out_path = Path(grid["out"]) if grid["out"] is not None else None
        result = run_sweep(spec, out_path, overwrite=grid["overwrite"], report=click.echo)
    status = result.report(click.echo, lambda line: click.echo(line, err=True))
    if status:
        sys.exit(status)


def _new_spec(grid: dict[str, Any], python: str | None, resources: dict[str, Any]) -> Any:
    """The ``SweepSpec`` of a new sweep's options (``SweepError`` for a grid not given)."""
    from alm_offline.tools.sweep import (
        SweepError,
        SweepSpec,
        parse_list,
        parse_methods,
        parse_seeds,
    )

    envs, datasets, config = grid["envs"], grid["datasets"], grid["config"]
    if (envs is None) == (datasets is None):
        raise SweepError("give --envs (an online sweep) or --datasets (an offline one)")
    if grid["seeds"] is None:
        raise SweepError("give --seeds, e.g. --seeds 1,2,3")
    mode = ONLINE if envs is not None else OFFLINE
    return SweepSpec(
        mode=mode.name,
        name=grid["name"] or (Path(config).stem if config else OFFLINE.default_config),
        config=config,
        cells=parse_list(envs if mode.online else datasets, CELL_FLAGS[mode.name]),
        methods=parse_methods(grid["methods"] or "alm"),
        seeds=parse_seeds(grid["seeds"]),
        seeds_per_trial=grid["seeds_per_trial"],
        overrides=list(grid["overrides"]),
        python=str(Path(python or sys.executable).absolute()),  # a venv's symlink is kept
        **{k: v for k, v in resources.items() if v is not None},
    )
