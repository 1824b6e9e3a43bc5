"""Per-update metrics kept on the device and turned into floats once per logging window."""

from __future__ import annotations

import time

import torch

from alm_offline.errors import AlmError

Metrics = dict[str, torch.Tensor]


class NonFiniteError(AlmError):
    """A loss or gradient norm became NaN or infinite (the run failed; exit status 1)."""

    exit_code = 1


class MetricsWindow:
    """Per-update metric tensors, each (S,) (one value per seed), turned into floats only
    when flushed (one host sync). ``seeds`` names the seeds in a ``NonFiniteError``."""

    def __init__(self, seeds: tuple[int, ...] = (0,)) -> None:
        self.seeds = seeds
        self._rows: list[Metrics] = []
        self._first_update = 0
        self._started = time.perf_counter()

    def add(self, update_index: int, metrics: Metrics) -> None:
        if not self._rows:
            self._first_update = update_index
        self._rows.append(metrics)

    def __len__(self) -> int:
        return len(self._rows)

    def _table(self) -> tuple[list[str], torch.Tensor]:
        """(keys, (updates, metrics, seeds) tensor); raises ``NonFiniteError`` at the first
        bad update, naming its seed."""
        keys = list(self._rows[0])
        rows = [torch.stack([row[k].float().reshape(-1) for k in keys]) for row in self._rows]
        table = torch.stack(rows)
        finite = torch.isfinite(table).cpu()
        if not bool(finite.all()):
            bad_row, bad_col, bad_seed = (~finite).nonzero()[0].tolist()
            raise NonFiniteError(
                f"non-finite {keys[bad_col]} at update {self._first_update + bad_row} of "
                f"seed {self.seeds[bad_seed]}; the last checkpoint predates it"
            )
        return keys, table

    def check_finite(self) -> None:
        """Raise ``NonFiniteError`` if any update in the window went non-finite."""
        if self._rows:
            self._table()

    def flush(self) -> list[dict[str, float]]:
        """Each seed's means over the window (after ``check_finite``), with updates per
        second; [] for an empty window."""
        if not self._rows:
            return []
        keys, table = self._table()
        elapsed = time.perf_counter() - self._started
        means = table.mean(0).T.tolist()  # (seeds, metrics)
        rate = len(self._rows) / max(elapsed, 1e-9)
        self._rows.clear()
        self._started = time.perf_counter()
        return [{**dict(zip(keys, seed, strict=True)), "updates_per_sec": rate} for seed in means]
