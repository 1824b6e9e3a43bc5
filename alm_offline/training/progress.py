"""Progress display: a rich bar on a terminal, silent otherwise or with --quiet."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class ProgressDisplay:
    """``with ProgressDisplay(total, start, label, enabled) as p: p.advance(step, info)``."""

    def __init__(self, total: int, start: int, label: str, enabled: bool | None = None) -> None:
        self.enabled = sys.stdout.isatty() if enabled is None else enabled
        self.total, self.start, self.label = total, start, label
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.label, total=self.total, completed=self.start, info=""
            )
        return self

    def advance(self, completed: int, info: str | None = None) -> None:
        if self._progress is not None:
            fields = {} if info is None else {"info": info}
            self._progress.update(self._task, completed=completed, **fields)

    def note(self, info: str) -> None:
        """Replace the info text alone (shown while something long runs, such as a compile)."""
        if self._progress is not None:
            self._progress.update(self._task, info=info)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
