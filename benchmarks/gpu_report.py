"""The figures of ``benchmarks/gpu_check.sh``: fidelity.json, long.json and summary.md.

    python benchmarks/gpu_report.py OUT_DIR RUNS_DIR

Reads OUT_DIR/bench.jsonl, OUT_DIR/system.json, OUT_DIR/tests.txt and the run dirs
RUNS_DIR/fidelity/s{1..5} (one batched run) and RUNS_DIR/long (the last may have been stopped at the
deadline: its figures then come from metrics.jsonl and eval.jsonl).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alm_offline.training.loggers import read_jsonl  # noqa: E402


def run_figures(run_dir: Path) -> dict[str, Any]:
    """Evaluations, steps reached and env steps/s of a run dir, finished or stopped."""
    summary_path = run_dir / "summary.json"
    metrics = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    evals = read_jsonl(run_dir / "eval.jsonl") if (run_dir / "eval.jsonl").exists() else []
    rows = [r for r in metrics if r.get("env_steps_per_sec")]
    figures: dict[str, Any] = {
        "finished": summary_path.exists(),
        "evaluations": [[r["env_step"], r["return_mean"]] for r in evals],
        "env_steps": rows[-1]["env_step"] if rows else 0,
        "updates": rows[-1].get("updates", 0) if rows else 0,
    }
    if rows:
        # rows carry the mean rate since the start: elapsed = steps / rate
        elapsed = [r["env_step"] / r["env_steps_per_sec"] for r in rows]
        figures["env_steps_per_sec"] = rows[-1]["env_steps_per_sec"]
        figures["elapsed_seconds"] = elapsed[-1]
        if len(rows) > 1:  # after the warm-up: one update per env step, evaluations included
            figures["env_steps_per_sec_training"] = (rows[-1]["env_step"] - rows[0]["env_step"]) / (
                elapsed[-1] - elapsed[0]
            )
    if figures["finished"]:
        summary = json.loads(summary_path.read_text())
        figures["env_steps"] = summary["env_steps"]
        figures["updates"] = summary["updates"]
        figures["wall_seconds"] = summary["wall_seconds"]
    return figures


def profile_lines(out: Path) -> list[str]:
    """The headline of each gpu_profile.py run (kernels and ms per update), if any ran."""
    path = out / "profile.txt"
    if not path.exists():
        return []
    heads = [line for line in path.read_text().splitlines() if line.startswith("precision ")]
    return [*(f"- {line}" for line in heads), ""]


def seeds_bench_lines(out: Path) -> list[str]:
    """The rows of ``alm bench --seeds`` (seeds.json), if it ran."""
    path = out / "seeds.json"
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return []
    lines = [
        "",
        "| seeds | updates/s | seed-updates/s | vs N=1 | seed env-steps/s |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['seeds']} | {row['updates_per_sec']:.1f} | {row['seed_updates_per_sec']:.1f} "
            f"| {row['speedup']:.2f}x | {row['seed_env_steps_per_sec']:.1f} |"
        )
    return lines


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def main(out: Path, runs: Path) -> None:
    bench = read_jsonl(out / "bench.jsonl") if (out / "bench.jsonl").exists() else []
    system = json.loads((out / "system.json").read_text()) if (out / "system.json").exists() else {}
    tests = (
        (out / "tests.txt").read_text().strip().splitlines() if (out / "tests.txt").exists() else []
    )
    seeds = {seed: run_figures(runs / "fidelity" / f"s{seed}") for seed in (1, 2, 3, 4, 5)}
    finals = [s["evaluations"][-1][1] for s in seeds.values() if s["evaluations"]]
    fidelity = {
        "seeds": seeds,
        "final_eval_mean": statistics.mean(finals) if finals else None,
        "final_eval_std": statistics.pstdev(finals) if finals else None,
    }
    write_json(out / "fidelity.json", fidelity)
    long = run_figures(runs / "long")
    write_json(out / "long.json", long)

    lines = [
        f"# GPU check: {system.get('gpu') or 'no GPU'} (torch {system.get('torch')}, "
        f"CUDA {system.get('cuda')}, Python {system.get('python')})",
        "",
        f"CUDA tests: {tests[-1] if tests else 'not run'}",
        "",
        *profile_lines(out),
        "| env | precision | graphed | fused | updates/s | env steps/s (loop) "
        "| CUDA max alloc MiB | eager updates/s, same run | kernels/update | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in bench:
        alloc = row.get("cuda_max_allocated_mib")
        eager, compiled = row.get("eager_updates_per_sec"), row.get("compile_seconds")
        kernels = (row.get("profile") or {}).get("ops_per_update")
        lines.append(
            f"| {row['env']} | {row['precision']} | {row['graphed']} | {row.get('fused', False)} "
            f"| {row['updates_per_sec']:.0f} | {row['env_steps_per_sec']:.0f} | "
            f"{'-' if alloc is None else f'{alloc:.0f}'} | "
            f"{'-' if eager is None else f'{eager:.0f}'} | "
            f"{'-' if kernels is None else f'{kernels:.0f}'} | "
            f"{'-' if compiled is None else f'{compiled:.0f}'} |"
        )
    lines += seeds_bench_lines(out)
    lines += [
        "",
        "HalfCheetah-v5 fidelity runs, seeds 1-5 in one process (eval.latent=sample):",
        "",
    ]
    for seed, fig in seeds.items():
        curve = ", ".join(f"{step}: {ret:.0f}" for step, ret in fig["evaluations"])
        lines.append(
            f"- seed {seed}: {curve or 'no evaluations'} "
            f"({fig.get('env_steps_per_sec', 0):.0f} env steps/s, finished {fig['finished']})"
        )
    if finals:
        lines.append(
            f"- final mean {fidelity['final_eval_mean']:.0f} +- {fidelity['final_eval_std']:.0f}"
        )
    curve = ", ".join(f"{step}: {ret:.0f}" for step, ret in long["evaluations"]) or "none"
    state = "finished" if long["finished"] else "stopped"
    lines += [
        "",
        f"Long run: {long['env_steps']} env steps ({state}), "
        f"{long.get('env_steps_per_sec', 0):.0f} env steps/s overall, "
        f"{long.get('env_steps_per_sec_training', 0):.0f} after the warm-up; evaluations {curve}",
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
