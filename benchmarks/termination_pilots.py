"""The pilots that choose ``agent.termination`` (issue 47 items 3-4; docs/termination.md,
"Chosen"): offline ALM on the choice suite (SAC seed 1, never a report file), seeds
101-103 in one process per variant, the frozen config otherwise, issue 40's protocol.

Trains ``termination=none`` and ``termination=learned`` side by side (two processes, one
torch thread each; a rerun resumes an interrupted run and skips a finished one), then runs
``alm analyze falls`` on each, and writes ``results/choice/termination-pilots.json``: per
variant and seed every evaluation's normalised score and the protocol score (mean of the
last 3), the falls measurement, and the rule's verdict as docs/termination.md fixed it.

    python benchmarks/termination_pilots.py [--data data/choice/hopper-sac/hopper-sac-medium.hdf5]
        [--work runs/choice] [--out results/choice/termination-pilots.json]

The choice suite: alm dataset make-suite --behaviour sac --envs Hopper-v5 --seed 1
--out data/choice --work-dir suites/choice --python .venv-baselines/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alm_offline.tools.stats import final_score  # noqa: E402
from alm_offline.training.loggers import read_jsonl  # noqa: E402

SEEDS = (101, 102, 103)
VARIANTS = ("none", "learned")
CONFIG = ("--config", "offline-halfcheetah-sac", "env=Hopper-v5", "threads=1")


def command(data: Path, run: Path, variant: str) -> list[str]:
    """The train-offline that trains (or resumes) ``variant``'s pilot in ``run``."""
    head = [sys.executable, "-m", "cli", "train-offline", "--quiet"]
    if (run / "config.yaml").exists():
        return [*head, "--resume", str(run)]
    seeds = ",".join(map(str, SEEDS))
    return [*head, "--dataset", str(data), *CONFIG, f"seeds={seeds}",
            f"agent.termination={variant}", f"run_dir={run}"]  # fmt: skip


def seed_scores(run: Path) -> dict[str, dict]:
    out = {}
    for seed in SEEDS:
        rows = read_jsonl(run / f"s{seed}" / "eval.jsonl")
        scores = [row["normalized_score_mean"] for row in rows]
        out[str(seed)] = {
            "updates": [row["updates"] for row in rows],
            "scores": scores,
            "score": final_score(scores),
        }
    return out


def verdict(results: dict[str, dict]) -> dict:
    """docs/termination.md's rule: learned only if its mean seed score is above none's by
    more than 1 point and its lowest seed is not below none's lowest."""
    score = {v: [s["score"] for s in results[v]["seeds"].values()] for v in VARIANTS}
    mean = {v: float(np.mean(score[v])) for v in VARIANTS}
    low = {v: float(np.min(score[v])) for v in VARIANTS}
    adopt = mean["learned"] > mean["none"] + 1.0 and low["learned"] >= low["none"]
    return {"mean": mean, "lowest": low, "chosen": "learned" if adopt else "none"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/choice/hopper-sac/hopper-sac-medium.hdf5")
    parser.add_argument("--work", default="runs/choice")
    parser.add_argument("--out", default="results/choice/termination-pilots.json")
    args = parser.parse_args()
    data, work = (REPO / args.data).resolve(), REPO / args.work
    runs = {v: work / f"hopper-medium-{v}" for v in VARIANTS}
    todo = [v for v in VARIANTS if not (runs[v] / "summary.json").exists()]
    children = [subprocess.Popen(command(data, runs[v], v), cwd=REPO) for v in todo]
    if any(child.wait() != 0 for child in children):
        raise SystemExit("a pilot failed (its run dir says why); rerun to resume it")
    results = {}
    for variant, run in runs.items():
        falls = subprocess.run(
            [sys.executable, "-m", "cli", "analyze", "falls", "--json",
             *(str(run / f"s{seed}") for seed in SEEDS)],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        results[variant] = {"seeds": seed_scores(run), "falls": json.loads(falls)}
    record = {
        "data": args.data,
        "data_note": "choice suite: make-suite --behaviour sac --envs Hopper-v5 --seed 1",
        "command": " ".join(
            command(Path(args.data), Path(args.work) / "hopper-medium-VARIANT", "VARIANT")[2:]
        ),
        "variants": results,
        "verdict": verdict(results),
    }
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["verdict"], indent=1))


if __name__ == "__main__":
    main()
