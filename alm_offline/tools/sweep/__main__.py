"""``python -m alm_offline.tools.sweep``: one sweep as a subprocess the library starts (a
grid's cell, ``alm grid run``), below the ``alm`` CLI.

    python -m alm_offline.tools.sweep --spec JSON --out OUT [--address A]
    python -m alm_offline.tools.sweep --resume OUT [--python P] [--address A]

``--spec`` is a ``SweepSpec`` as JSON (the fields ``sweep.json`` records). It prints what
``alm sweep`` prints; a mistake is one ``error: ...`` line and exit status 2, a failed trial
exit status 1.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from alm_offline.errors import AlmError, exit_on_sigterm, printable
from alm_offline.tools.sweep.engine import resume_sweep, run_sweep
from alm_offline.tools.sweep.spec import SweepError, SweepSpec


def main(argv: Sequence[str] | None = None) -> int:
    """Run or resume one sweep; its exit status."""
    parser = argparse.ArgumentParser(prog="python -m alm_offline.tools.sweep")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--spec", help="a new sweep: its SweepSpec as JSON")
    start.add_argument("--resume", metavar="OUT", help="continue the sweep in OUT")
    parser.add_argument("--out", help="the new sweep's folder")
    parser.add_argument("--python", help="on --resume: the trials' interpreter")
    parser.add_argument("--address", help="Ray cluster host:port or auto [default: local]")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    say = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if args.resume is not None:
            result = resume_sweep(
                Path(args.resume), python=args.python, address=args.address, report=say
            )
        else:
            if args.out is None:
                raise SweepError("--spec needs --out")
            spec = SweepSpec.from_record({**json.loads(args.spec), "address": args.address})
            result = run_sweep(spec, Path(args.out), report=say)
    except (AlmError, json.JSONDecodeError) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    return result.report(say, lambda line: print(line, file=sys.stderr))


if __name__ == "__main__":
    sys.exit(main())
