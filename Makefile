# Set-up and the two everyday commands. PYTHON may point at a venv's python.
PYTHON ?= python3

.PHONY: system install run test test-fast lint

# OSMesa: offscreen MuJoCo rendering on machines without a GPU (alm eval --video)
system:
	@ldconfig -p | grep -q libOSMesa || { apt-get update -qq && apt-get install -y -qq libosmesa6; }

install: system
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q -e ".[dev]"

run: install
	$(PYTHON) -m cli train-online --config quick

test: install
	$(PYTHON) -m pytest -q

# Everything but the tests marked slow (training runs, subprocesses, Ray, wheel builds)
test-fast: install
	$(PYTHON) -m pytest -q -m "not slow"

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
