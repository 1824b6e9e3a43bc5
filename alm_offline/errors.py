"""The one user-facing error type, and the one warning type.

``AlmError`` is raised for anything the user can mend: bad input, a missing file, a
config that cannot work. The ``alm`` command group turns it into one ``error: ...`` line
and exit status ``exit_code``; any other exception is a bug and keeps its traceback. Each
module subclasses it with a name that says where the problem is (``ConfigError``,
``DatasetError``, ...), so tests and callers can still tell them apart.
"""

from __future__ import annotations

import sys
import warnings


class AlmError(Exception):
    """A problem the user can mend; its message is one line."""

    exit_code = 2


class AlmWarning(UserWarning):
    """Something the user should know that does not stop the work (one line)."""


class WriteError(AlmError):
    """A file or folder that cannot be written: a full disk, a read-only folder."""

    @classmethod
    def of(cls, path: object, exc: BaseException, what: str = "") -> WriteError:
        """``cannot write [WHAT ]'PATH': CAUSE``, the cause taken from the ``OSError`` (or
        from the first line of a library's wrapper of one)."""
        cause = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or ["?"])[0]
        return cls(f"cannot write {what + ' ' if what else ''}'{path}': {cause}")


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``, ``\\n``), safe for a terminal."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM as SIGINT is: an exception, so every ``finally`` runs (a checkpoint half
    written removes its temporary file) before the process exits with 128 + signum. Installed
    by every entry point (``alm``, ``python -m alm_offline.training``)."""
    raise SystemExit(128 + signum)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for every entry point: an ``AlmWarning`` as one ``warning:``
    line on stderr, any other warning as Python prints it."""
    if issubclass(category, AlmWarning):
        sys.stderr.write(f"warning: {printable(str(message))}\n")
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
