"""The README's promises a newcomer reads first: its library example runs, its length."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_library_example_runs_and_prints_the_losses():
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    result = subprocess.run(
        [sys.executable, "-c", blocks[0]], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = eval(result.stdout.strip().splitlines()[-1])  # a list of floats per loss
    assert {"loss/model_bound", "loss/behaviour_cloning", "loss/critic"} <= printed.keys()
    for values in printed.values():  # one loss per seed, each finite
        assert len(values) == 3 and all(isinstance(v, float) and v == v for v in values)
    assert 0 not in printed["loss/behaviour_cloning"]  # the offline config's BC term is on
    assert len(set(printed["loss/critic"])) == 3  # three agents, three losses


def test_the_readme_stays_an_entry_point():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    assert lines[3].startswith("make run") and lines[4].startswith("make test")
