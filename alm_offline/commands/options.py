"""Option blocks the commands share (one definition each): --json, --overwrite, the
dataset and action-box options, the training options, --device, --seed."""

from __future__ import annotations

import math
from collections.abc import Callable

import click

from alm_offline.config import BUNDLED_CONFIGS, DEVICES, check_device_name
from alm_offline.errors import AlmError


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
CONFIG = click.option(
    "--config",
    "config",
    default=None,
    help=f"YAML file, or a bundled config: {', '.join(BUNDLED_CONFIGS)}.",
)
TRAIN = options(
    CONFIG,
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


OFFLINE_DATA = options(
    DATASET_OPTION,
    REF_SCORES,
    ACTION_BOX,
    click.option("--clip-actions", is_flag=True, help="Clip dataset actions into their box."),
)
