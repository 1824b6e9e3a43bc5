"""``alm sweep``: one engine for online (env x seed) and offline (dataset x method x seed)
grids, each trial a ``python -m alm_offline.training`` subprocess inside a Ray task, resumable
from its folder. ``python -m alm_offline.tools.sweep`` runs one as a subprocess (a grid's cell).

* ``spec.py``: the spec, the trials and their run dirs, every check made before Ray starts;
* ``trials.py``: a trial's state on disk, its command line, running it in a worker;
* ``ray_runner.py``: joining Ray and running the tasks (no automatic retry);
* ``outputs.py``: ``sweep.json``, ``results.csv``, ``results.md``, ``curves.png``;
* ``engine.py``: ``run_sweep`` and ``resume_sweep``.

See docs/sweeps.md.
"""

from alm_offline.tools.sweep.engine import resume_sweep, run_sweep
from alm_offline.tools.sweep.outputs import SweepResult
from alm_offline.tools.sweep.ray_runner import RAY_MISSING
from alm_offline.tools.sweep.spec import (
    SweepError,
    SweepSpec,
    check_address,
    parse_list,
    parse_methods,
    parse_seeds,
)

__all__ = [
    "RAY_MISSING",
    "SweepError",
    "SweepResult",
    "SweepSpec",
    "check_address",
    "parse_list",
    "parse_methods",
    "parse_seeds",
    "resume_sweep",
    "run_sweep",
]
