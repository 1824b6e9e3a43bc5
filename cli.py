"""The ``alm`` command line: the Click group, its commands (``alm_offline/commands/``, a
module per command or group) and the one place errors are shown.

Every user mistake the library finds is an ``AlmError``, which ``AlmGroup`` shows as one
``error: ...`` line with its exit status (2); ``AlmWarning``s print as ``warning: ...``
lines. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal
import sys
import warnings

import click

from alm_offline.commands.analyze import analyze
from alm_offline.commands.bench import bench_command
from alm_offline.commands.dataset import dataset
from alm_offline.commands.grid import grid
from alm_offline.commands.results import config_command, eval_command, plot_command
from alm_offline.commands.sweep import sweep_command
from alm_offline.commands.train import baseline_command, train_offline_command, train_online_command
from alm_offline.errors import AlmError, AlmWarning, exit_on_sigterm, printable, show_warning

# ------------------------------------------------------------------- errors, warnings


class UserError(click.ClickException):
    """An ``AlmError`` as click shows it: ``error: MESSAGE`` on stderr, no traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {printable(self.format_message())}", err=True)


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
            warnings.showwarning = show_warning
            try:
                return super().invoke(ctx)
            except AlmError as exc:
                raise UserError(str(exc), exc.exit_code) from None


@click.group(cls=AlmGroup, context_settings={"help_option_names": ["-h", "--help"]})
def alm() -> None:
    """Aligned Latent Models: online and offline model-based RL with one objective."""


# every command of ``alm`` (its --help lists them alphabetically)
COMMANDS = (
    train_online_command,
    train_offline_command,
    baseline_command,
    dataset,
    bench_command,
    config_command,
    eval_command,
    plot_command,
    analyze,
    sweep_command,
    grid,
)
for command in COMMANDS:
    alm.add_command(command)


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    alm(prog_name="alm")


if __name__ == "__main__":
    sys.exit(main())
