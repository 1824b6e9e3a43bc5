"""Run-directory logging: JSONL files that are always written."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class JsonlLogger:
    """Appends rows to ``metrics.jsonl`` and ``eval.jsonl`` in a run directory."""

    files = ("metrics.jsonl", "eval.jsonl")

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def _append(self, name: str, row: dict[str, Any]) -> None:
        with open(self.run_dir / name, "a", encoding="utf-8") as f:
            f.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")

    def metrics(self, row: dict[str, Any]) -> None:
        self._append("metrics.jsonl", row)

    def evaluation(self, row: dict[str, Any]) -> None:
        self._append("eval.jsonl", row)

    def truncate_after(self, key: str, value: int) -> None:
        """Drop rows whose ``key`` is beyond ``value`` (rows a resumed run will write again)."""
        for name in self.files:
            path = self.run_dir / name
            if not path.exists():
                continue
            kept = [
                line
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get(key, 0) <= value
            ]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
            tmp.replace(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All rows of a JSONL file."""
    if not path.exists():
        return []
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
