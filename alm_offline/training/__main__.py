"""``python -m alm_offline.training MODE [OPTIONS] [KEY=VALUE ...]``: one training run, the
entry the library itself starts as a subprocess (a sweep's trial), below the ``alm`` CLI.

MODE is ``online`` or ``offline`` (an offline run's method, ALM or a d3rlpy baseline, is
the ``method`` key); ``--config``, ``--resume DIR``, ``--overwrite`` and ``--quiet`` mean
what they mean to ``alm train-online`` and ``alm train-offline``. A mistake the library
finds is one ``error: ...`` line on stderr and exit status 2, as from ``alm``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Sequence

from alm_offline.config import MODES
from alm_offline.errors import AlmError, AlmWarning, exit_on_sigterm, printable, show_warning


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The entry's arguments (argparse's usage error: exit 2, as click's)."""
    parser = argparse.ArgumentParser(prog="python -m alm_offline.training")
    parser.add_argument("mode", choices=list(MODES))
    parser.add_argument("--config", default=None, help="YAML file, or a bundled config")
    parser.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    parser.add_argument("--overwrite", action="store_true", help="replace a run in run_dir")
    parser.add_argument("--quiet", action="store_true", help="no per-evaluation lines")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    return parser.parse_intermixed_args(argv)  # options and KEY=VALUE in any order


def main(argv: Sequence[str] | None = None) -> int:
    """Train one run to its ``steps``; print its summary; 0, or 2 with one ``error:`` line."""
    from alm_offline.training.rundir import describe_summary
    from alm_offline.training.start import start_offline, start_online, train

    args = parse_arguments(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    start_run = start_online if args.mode == "online" else start_offline
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", AlmWarning)
            warnings.showwarning = show_warning
            start = start_run(
                args.config, tuple(args.overrides), resume=args.resume, overwrite=args.overwrite
            )
            summary = train(start, quiet=args.quiet)
    except AlmError as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    print(describe_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
