"""Why offline ALM loses its policy on HalfCheetah medium-expert (issue 47 item 5).

Retrains issue 40's second medium-expert trial (seeds 4 and 5 in one process, the frozen
config, exactly as the grid ran it) in 5000-update segments (``--resume`` is exact, so the
run is the grid's; each segment's evaluation is checked against the committed cell file)
and keeps each seed's checkpoint after every segment. Then, per kept checkpoint:

* the deterministic policy's action saturation on the dataset's states (share of action
  dims with |a| > 0.99) and its mean |a|;
* the critic against Monte-Carlo returns (``alm analyze bias``: the policy's own episodes);
* the model KL's parts on the dataset (``alm analyze model-kl``);

and, from ``metrics.jsonl``, the behaviour term's size over training (``actor/behaviour_kl``
x its weight against the actor's imagined return and value). Writes
``results/halfcheetah-sac/collapse/collapse.json`` and prints a markdown table.

    python benchmarks/medium_expert_collapse.py [--seeds 4,5] [--work runs/collapse]

About 30 minutes of one core (AMD EPYC) for the training, a few minutes for the analyses.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared/data/halfcheetah-sac/halfcheetah-sac-medium-expert.hdf5"
CELL = REPO / "results/halfcheetah-sac/cells/medium-expert--alm.json"
OUT = REPO / "results/halfcheetah-sac/collapse"
SEGMENT, STEPS = 5000, 50000  # --segment, --steps (smaller for a smoke run)


def alm(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"alm {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def train_in_segments(
    run: Path, seeds: list[int], keep: Path, schedule: range, extra: list[str]
) -> None:
    """Train to each step of ``schedule`` in turn, keeping s<SEED>-<STEP>.pt after each
    (a rerun skips the kept steps and resumes the run)."""
    keep.mkdir(parents=True, exist_ok=True)
    for step in schedule:
        if all((keep / f"s{seed}-{step}.pt").exists() for seed in seeds):
            continue
        if (run / "config.yaml").exists():
            alm("train-offline", "--resume", str(run), f"steps={step}", "--quiet")
        else:
            alm(
                "train-offline", "--dataset", str(DATA), "--config", "offline-halfcheetah-sac",
                "env=HalfCheetah-v5", f"seeds={','.join(map(str, seeds))}", f"steps={step}",
                f"run_dir={run}", "--quiet", *extra,
            )  # fmt: skip
        for seed in seeds:
            shutil.copyfile(run / f"s{seed}/checkpoints/latest.pt", keep / f"s{seed}-{step}.pt")
        print(f"trained to {step}", flush=True)


def check_reproduced(run: Path, seeds: list[int]) -> dict[int, bool]:
    """Each seed's evaluations against the committed cell file's (bit for bit)."""
    cell = json.loads(CELL.read_text())
    same = {}
    for seed in seeds:
        rows = [json.loads(line) for line in (run / f"s{seed}/eval.jsonl").open()]
        ours = [(r["updates"], r["normalized_score_mean"]) for r in rows]
        theirs = [(e["updates"], e["score"]) for e in cell["seeds"][str(seed)]["evaluations"]]
        same[seed] = ours == theirs
    return same


@torch.no_grad()
def saturation(checkpoint: Path) -> dict[str, float]:
    """The deterministic policy's actions on the dataset's states: the share of dims at
    |a| > 0.99 and the mean |a|."""
    from alm_offline.datasets import load_dataset
    from alm_offline.training.checkpoint import load_agent

    agent, _, _ = load_agent(checkpoint)
    data = load_dataset(str(DATA), env_id="HalfCheetah-v5")
    obs, _ = data.transition_observations()
    states = torch.as_tensor(obs[::10])  # every 10th state: 20000
    actions = agent.wm.pi(agent.wm.encode(states[None])[0])[0]
    data_actions = torch.as_tensor(data.agent_actions()[::10])
    return {
        "saturated": float((actions.abs() > 0.99).float().mean()),
        "mean_abs_action": float(actions.abs().mean()),
        "data_saturated": float((data_actions.abs() > 0.99).float().mean()),
        "distance_to_data_action": float((actions - data_actions).pow(2).sum(-1).sqrt().mean()),
    }


def training_curves(run: Path, seed: int, schedule: range) -> list[dict[str, float]]:
    """metrics.jsonl's means over each segment of ``schedule``: the behaviour term's size
    and the actor's parts."""
    rows = [json.loads(line) for line in (run / f"s{seed}/metrics.jsonl").open()]
    keys = ("actor/behaviour_kl", "actor/imagined_reward", "actor/classifier_reward",
            "actor/value", "critic/q_mean", "model/kl", "loss/actor")  # fmt: skip
    picked = []
    for step in schedule:
        near = [r for r in rows if step - schedule.step < r.get("updates", -1) <= step]
        if near:
            means = {k: float(np.mean([r[k] for r in near if k in r])) for k in keys}
            picked.append({"updates": step, **means})
    return picked


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="4,5")
    parser.add_argument("--work", default="runs/collapse")
    parser.add_argument("--bias-steps", default="15000,30000,40000,45000,50000")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--segment", type=int, default=SEGMENT)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE for a smoke run")
    args = parser.parse_args()
    schedule = range(args.segment, args.steps + 1, args.segment)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = REPO / args.work
    run, keep = work / "run", work / "keep"
    train_in_segments(run, seeds, keep, schedule, args.overrides)
    record = {"seeds": {}, "reproduced": check_reproduced(run, seeds), "data": str(DATA.name)}
    for seed in seeds:
        per_step = []
        for step in schedule:
            checkpoint = keep / f"s{seed}-{step}.pt"
            row = {"updates": step, **saturation(checkpoint)}
            kl = json.loads(alm("analyze", "model-kl", str(checkpoint), "--json"))[0]
            row.update({f"kl_{k}": kl[k] for k in ("kl", "span", "missed")})
            if str(step) in args.bias_steps.split(","):
                out = work / f"bias-s{seed}-{step}"
                bias = json.loads(
                    alm("analyze", "bias", str(checkpoint), "--out", str(out), "--json")
                )
                row.update({f"bias_{k}": v for k, v in bias.items() if isinstance(v, (int, float))})
            per_step.append(row)
            print(seed, row, flush=True)
        record["seeds"][str(seed)] = {
            "checkpoints": per_step,
            "metrics": training_curves(run, seed, schedule),
        }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "collapse.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out / 'collapse.json'}")


if __name__ == "__main__":
    main()
