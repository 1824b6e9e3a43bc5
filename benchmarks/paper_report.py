"""The files of ``benchmarks/paper_results.sh``: results.json, results.md and curves.png.

    python benchmarks/paper_report.py OUT_DIR RUNS_DIR
    python benchmarks/paper_report.py --progress RUN_DIR     # new | unfinished | finished N

Reads OUT_DIR/system.json, OUT_DIR/tests.txt and OUT_DIR/seeds.json (``alm bench --seeds 1,5
--json``) when they exist, and the batched run dirs below RUNS_DIR (one per env).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alm_offline.tools.paper_results import run_progress, write_paper_results  # noqa: E402
from benchmarks.gpu_report import seeds_bench_lines  # noqa: E402


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def main(out: Path, runs: Path) -> None:
    system = _read_json(out / "system.json")
    bench = _read_json(out / "seeds.json")
    speed = seeds_bench_lines(out) or ["", "Speed: alm bench --seeds did not finish (log.txt)."]
    tests = out / "tests.txt"
    last_test = tests.read_text().strip().splitlines()[-1:] if tests.exists() else []
    header = "\n".join(
        [
            f"# ALM online against the paper: {system.get('gpu') or 'CPU'} (torch "
            f"{system.get('torch')}, CUDA {system.get('cuda')}, Python {system.get('python')})",
            "",
            f"CUDA tests: {last_test[0] if last_test else 'not run'}",
            *speed,
        ]
    )
    rows = write_paper_results(out, [runs], header, {"system": system, "bench": bench})
    print(f"wrote {out}/results.md ({len(rows)} rows)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--progress"]:
        print(run_progress(Path(sys.argv[2])))
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
