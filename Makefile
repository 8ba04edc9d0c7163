# Two entry points that work on a fresh machine with only Python 3.11:
#   make demo   - quick local sweep on an embedded Ray (the main job)
#   make test   - the test suite (ruff, the setup check, pytest)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test check-setup lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is pinned and installed first: an unpinned torch pulls gigabytes of CUDA packages.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m mmray.tune

# the installed torch and Ray match the Makefile's and clusters/aws.yaml's pins (facts about this
# machine, not about the code: checked here, not in the unit tests)
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) scripts/check_setup.py
	$(PY) -m pytest -q

check-setup: $(STAMP)
	$(PY) scripts/check_setup.py

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/exact_solver.py
	$(PY) benchmarks/sim_throughput.py
	$(PY) benchmarks/solvers.py
	$(PY) benchmarks/tune_scaling.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
