"""Training commands: ``alm train-online``, ``alm train-offline``, ``alm baseline``."""

from __future__ import annotations

import sys

import click

from alm_offline.commands.options import OFFLINE_DATA, TRAIN
from alm_offline.config import BASELINE_METHODS, ONLINE_BASELINES
from alm_offline.errors import AlmError


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


@click.command("train-online")
@TRAIN
def train_online_command(config, resume, overwrite, quiet, overrides) -> None:
    """Train ALM online on a gymnasium env. OVERRIDES are KEY=VALUE (e.g. env=Hopper-v5)."""
    from alm_offline.training.start import start_online

    _train(start_online(config, overrides, resume=resume, overwrite=overwrite), quiet)


@click.command("train-offline")
@OFFLINE_DATA
@TRAIN
def train_offline_command(config, resume, overwrite, quiet, overrides, **data_options) -> None:
    """Train ALM offline on a fixed dataset (paper appendix A.7); steps counts updates.

    A dataset that names no env (and no env=ENV_ID) trains with evaluation off (eval.every=0);
    its actions need a known box: the file's, or the one --action-low and --action-high give."""
    from alm_offline.training.start import start_offline

    extra = _offline_overrides(**data_options)
    if resume is not None and extra:
        raise AlmError("--dataset/--ref-*/--action-*/--clip-actions cannot change on --resume")
    _train(start_offline(config, (*overrides, *extra), resume=resume, overwrite=overwrite), quiet)


def _offline_overrides(
    dataset_spec: str | None,
    ref_min: float | None,
    ref_max: float | None,
    action_low: tuple[float, ...] | None,
    action_high: tuple[float, ...] | None,
    clip_actions: bool,
) -> list[str]:
    """The offline options (``OFFLINE_DATA``) as KEY=VALUE overrides."""
    if dataset_spec is not None and not dataset_spec.strip():
        raise AlmError("--dataset is empty: give a Minari id, a Minari folder or an .hdf5 file")
    extra = [f"dataset={dataset_spec}"] if dataset_spec is not None else []
    extra += [f"eval.ref_min={ref_min}"] if ref_min is not None else []
    extra += [f"eval.ref_max={ref_max}"] if ref_max is not None else []
    for key, bounds in (("action_low", action_low), ("action_high", action_high)):
        extra += [f"{key}=[{','.join(map(repr, bounds))}]"] if bounds is not None else []
    return extra + (["clip_actions=true"] if clip_actions else [])


@click.command("baseline")
@click.argument("algo", type=click.Choice((*BASELINE_METHODS, *ONLINE_BASELINES)), metavar="ALGO")
@OFFLINE_DATA
@click.option("--env", "env_id", default=None, help="sac: the gymnasium env it trains in.")
@click.option("--config", "config", default=None, help="YAML file, or a bundled config.")
@click.option("--resume", default=None, metavar="RUN_DIR", help="sac: continue the run in RUN_DIR.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in run_dir.")
@click.option("--quiet", is_flag=True, help="No per-evaluation lines.")
@click.argument("overrides", nargs=-1)
def baseline_command(
    algo, env_id, config, resume, overwrite, quiet, overrides, **data_options
) -> None:
    """Train a baseline into a run dir like train-online's or train-offline's: d3rlpy's
    offline ALGO (bc, td3+bc, iql, cql; its D4RL settings) on a dataset, or sac, d3rlpy's
    online SAC at its MuJoCo settings, on --env (one seed per run; --resume continues it).
    OVERRIDES are KEY=VALUE (steps, seed, eval.every, eval.episodes, ...). Needs the
    baselines extra: pip install 'alm-offline[baselines]'."""
    from alm_offline.training.start import start_offline, start_online

    extra = _offline_overrides(**data_options)
    if algo in ONLINE_BASELINES:
        if extra:
            raise AlmError(f"alm baseline {algo} trains online: give --env, not dataset options")
        if (env_id is None) == (resume is None):
            raise AlmError(f"alm baseline {algo} needs --env ENV_ID (or --resume RUN_DIR)")
        given = () if resume else (f"env={env_id}", f"method={algo}")
        start = start_online(config, (*overrides, *given), resume=resume, overwrite=overwrite)
        if start.cfg.method != algo:
            raise AlmError(f"'{resume}' is a {start.cfg.method} run, not {algo}'s")
        _train(start, quiet)
        return
    if env_id is not None or resume is not None:
        raise AlmError(f"--env and --resume are for alm baseline sac; {algo} trains on a dataset")
    extra.append(f"method={algo}")
    _train(start_offline(config, (*overrides, *extra), overwrite=overwrite), quiet)
