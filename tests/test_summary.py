"""What a training run prints at its end: result, evaluation curve, run dir, next commands."""

from __future__ import annotations

from alm_offline.training.rundir import describe_summary, sparkline


def test_sparkline_spans_lowest_to_highest():
    assert sparkline([20.0, 1000.0, 510.0]) == "▁█▅"
    assert sparkline([5.0, 5.0]) == "▁▁"  # a flat curve


def test_the_end_of_a_run_shows_the_curve_the_best_checkpoint_and_what_to_do_next():
    summary = {
        "env": "InvertedPendulum-v5",
        "mode": "online",
        "env_steps": 3000,
        "updates": 2000,
        "eval_return_mean": 870.0,
        "eval_return_std": 12.5,
        "wall_seconds": 61.2,
        "run_dir": "runs/x",
        "evaluations": [[1000, 20.0], [2000, 1000.0], [3000, 870.0]],
        "best_eval_return_mean": 1000.0,
        "best_eval_at": 2000,
        "best_checkpoint": "runs/x/checkpoints/best.pt",
        "step_key": "env_step",
    }
    lines = describe_summary(summary).splitlines()
    assert lines[0] == (
        "InvertedPendulum-v5: eval return 870.0 +- 12.5 after 2000 updates (3000 env steps) in 61 s"
    )
    assert lines[1] == (
        "evaluations ▁█▇ at 1000, 2000, 3000 env steps: 20.0 -> 870.0; "
        "best 1000.0 (at 2000, checkpoints/best.pt)"
    )
    assert lines[2] == "run dir: runs/x"
    assert "alm eval runs/x --video runs/x/eval.mp4" in lines[3] and "--best" in lines[3]
    assert lines[4].strip() == "alm plot runs/x --out runs/x/curves.png"


def test_a_baseline_run_names_its_best_model_and_alm_eval():
    summary = {
        "env": "InvertedPendulum-v5",
        "mode": "offline",
        "method": "td3+bc",
        "dataset": "ip.hdf5",
        "updates": 200,
        "eval_return_mean": 30.0,
        "eval_return_std": 1.0,
        "wall_seconds": 3.0,
        "run_dir": "runs/b",
        "evaluations": [[100, 40.0], [200, 30.0]],
        "best_eval_return_mean": 40.0,
        "best_eval_at": 100,
        "best_checkpoint": "runs/b/checkpoints/best.d3",
        "step_key": "updates",
    }
    lines = describe_summary(summary).splitlines()
    assert lines[1].endswith("best 40.0 (at 100, checkpoints/best.d3)")
    assert lines[3].startswith("next: alm eval runs/b --video")
