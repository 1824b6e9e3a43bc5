"""Issue 40 item 4: the table of ``benchmarks/offline_bc_form.sh`` (run from the repository
root; reads ``runs/item4/*``): final evaluation, last-3 mean, IQM with its interval, model KL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alm_offline.tools.stats import final_score, summarise_seeds
from alm_offline.training.loggers import read_jsonl

FORMS = {
    "today": "today: bc_weight 1 absolute (10:1), a_0..a_{K-1}",
    "ratio": "bound's ratio: bc_weight 1 x c (1:1), a_0..a_{K-1}",
    "index": "bound's indexing: bc_weight 1 absolute, a_1..a_K",
    "bound": "bound's ratio and indexing (1:1, a_1..a_K)",
}


def row(run: Path, label: str) -> str:
    if not (run / "summary.json").is_file():
        return f"| {label} | not finished | | | |"
    finals, last3, kls = [], [], []
    for seed in (1, 2, 3):
        scores = [e["normalized_score_mean"] for e in read_jsonl(run / f"s{seed}/eval.jsonl")]
        finals.append(scores[-1])
        last3.append(final_score(scores))
        metrics = read_jsonl(run / f"s{seed}/metrics.jsonl")
        kls += [m["model/kl"] for m in metrics if "model/kl" in m]
    cell = summarise_seeds(last3)
    seeds = ", ".join(f"{v:.1f}" for v in last3)
    return (
        f"| {label} | {np.mean(finals):.1f} ± {np.std(finals):.1f} | {cell.mean:.1f} ± "
        f"{cell.std:.1f} ({seeds}) | {cell.iqm.describe()} | {min(kls):.0f}-{max(kls):.0f} |"
    )


if __name__ == "__main__":
    print("| form | final eval | last-3 mean (seeds 1, 2, 3) | IQM [95% CI] | model KL |")
    print("|---|---|---|---|---|")
    for name, label in FORMS.items():
        print(row(Path("runs/item4") / name, label))
