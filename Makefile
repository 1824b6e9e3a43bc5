# Set-up and the two everyday commands. PYTHON may point at a venv's python.
PYTHON ?= python3

.PHONY: system install baselines-env run test test-learning test-fast lint gpu-wheels gpu-check paper-results

# OSMesa: offscreen MuJoCo rendering on machines without a GPU (alm eval --video)
system:
	@ldconfig -p | grep -q libOSMesa || { apt-get update -qq && apt-get install -y -qq libosmesa6; }

install: system
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q -e ".[dev]"

# d3rlpy (alm baseline) in its own venv: d3rlpy 2.8 pins gymnasium==1.0.0, and the core
# install keeps the newest gymnasium; the suite runs the baselines (and the project under
# gymnasium 1.0) through this venv's python
BASELINES_VENV ?= .venv-baselines
baselines-env: system
	@test -x $(BASELINES_VENV)/bin/python || $(PYTHON) -m venv $(BASELINES_VENV)
	@$(BASELINES_VENV)/bin/python -c "import torch" 2>/dev/null || $(BASELINES_VENV)/bin/pip install -q "torch==2.13.0"
	$(BASELINES_VENV)/bin/pip install -q -e ".[baselines]"

run: install
	$(PYTHON) -m cli train-online --config quick

# one pytest worker per core, a test file per worker (its module fixtures trained once);
# every worker and the processes it starts use one torch thread (tests/conftest.py)
test: install baselines-env
	ALM_BASELINES_PYTHON=$(abspath $(BASELINES_VENV))/bin/python $(PYTHON) -m pytest -q -n auto --dist loadfile -m "not learning"

# the 5-seed learning-parity run (tests/test_learning.py, docs/seeds.md), alone: about 6 minutes
test-learning: install
	$(PYTHON) -m pytest -q -p no:xdist -m learning

# Everything but the tests marked slow (training runs, subprocesses, Ray, wheel builds)
test-fast: install
	$(PYTHON) -m pytest -q -m "not slow"

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# The GPU machines lack gymnasium, mujoco, minari and omegaconf: their wheels (cp312
# manylinux) into .whl, git-ignored, to carry to a device call (benchmarks/gpu_wheels.py)
gpu-wheels:
	$(PYTHON) benchmarks/gpu_wheels.py --out .whl

# On a GPU machine, from the repo root with .whl beside it: the whole CUDA check (about 7 min)
gpu-check:
	bash benchmarks/gpu_check.sh gpu-check-out

# On a GPU machine, with .whl beside it: the paper's curves, 5 seeds per env (docs/paper-results.md),
# into $OUT (the device call's folder that comes back) or ../alm-paper-results, never the repo
paper-results:
	bash benchmarks/paper_results.sh "$${OUT:-../alm-paper-results}"
