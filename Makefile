# LineWatch: `make demo` runs the stack, `make test` runs every test tier.
# Every target except `clean` creates .venv when missing and (re)installs the project only
# when pyproject.toml changed (stamp file .venv/.installed-<sha256 of pyproject.toml>).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LW := $(VENV)/bin/linewatch
PYPROJECT_SHA := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.installed-$(PYPROJECT_SHA)
LINT_PATHS := $(wildcard broker edge services migrations bench tests)
PYTEST_ARGS ?=
SIM_ARGS ?= --scenario tour
TESTS ?= tests

.PHONY: demo test test-live lint bench soak fuzz clean venv

venv: $(STAMP)

$(STAMP):
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,model]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# `linewatch demo`: the stack with the simulated line on the best model ready now (the demo
# model, else the quick one; with neither, the quick one is built first, a few minutes),
# while the demo model builds in the background; the workers switch to it when it lands.
# DEMO_SECONDS stops it after that many seconds; DEMO_ARGS adds `linewatch demo` options.
DEMO_SECONDS ?=
DEMO_ARGS ?=
demo: venv
	$(LW) demo $(if $(DEMO_SECONDS),--for $(DEMO_SECONDS)) $(DEMO_ARGS) --sim-args "$(SIM_ARGS)"

# All tiers but benchmarks and the live-line acceptance. Exit status 5 (no tests collected)
# counts as success.
test: venv
	@rc=0; $(PY) -m pytest -m "not bench and not live and not soak" $(PYTEST_ARGS) $(TESTS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests collected"; exit 0; fi; exit $$rc

# The live-line acceptance (tests marked `live`): builds var/models/quick when not up to
# date (or takes LINEWATCH_TEST_MODEL_DIR), runs `linewatch up` with the simulator for 60 s
# on the real Mosquitto and Postgres, checks the page in Chromium and scores SQL against
# ground truth; and drives `make demo DEMO_SECONDS=…` (a fresh start, a background build,
# a later run).
test-live: venv
	$(PY) -m pytest -m live $(PYTEST_ARGS) tests/e2e

# All three checks run, so one run shows every problem; the target fails if any failed.
lint: venv
	@rc=0; \
	$(VENV)/bin/ruff check $(LINT_PATHS) || rc=1; \
	$(VENV)/bin/ruff format --check $(LINT_PATHS) || rc=1; \
	$(VENV)/bin/mypy --explicit-package-bases $(LINT_PATHS) || rc=1; \
	exit $$rc

# Every bench/*.py except helpers (_*.py); each prints one JSON report, kept in var/bench/.
bench: venv
	@mkdir -p var/bench; failed=""; found=0; \
	for f in bench/*.py; do \
	  [ -e "$$f" ] || continue; n=$$(basename "$$f" .py); \
	  case "$$n" in _*) continue;; esac; found=1; \
	  echo "== $$f" >&2; \
	  if PYTHONPATH=. $(PY) "$$f" > "var/bench/$$n.out"; then \
	    grep '^{' "var/bench/$$n.out" | tail -n 1 > "var/bench/$$n.json"; cat "var/bench/$$n.json"; \
	    rm -f "var/bench/$$n.out"; \
	  else failed="$$failed $$n"; fi; \
	done; \
	[ $$found -eq 1 ] || echo "make bench: no benchmarks yet"; \
	if [ -n "$$failed" ]; then \
	  echo "make bench: crashed:$$failed (their output: var/bench/<name>.out)" >&2; exit 1; fi

# Coverage-guided fuzzing (atheris) of every decoder and the image path, seeded from
# tests/corpus/bad; one JSON line at the end, also kept in var/fuzz/fuzz.json.
FUZZ_SECONDS ?= 600
fuzz: venv
	@mkdir -p var/fuzz; rc=0; \
	PYTHONPATH=. $(PY) tests/fuzz/run_fuzz.py $(FUZZ_SECONDS) > var/fuzz/fuzz.out || rc=$$?; \
	cat var/fuzz/fuzz.out; grep '^{' var/fuzz/fuzz.out | tail -n 1 > var/fuzz/fuzz.json; exit $$rc

# The chaos soak (SOAK_SECONDS, default 600; SOAK_SEED replays a fault order; summary in
# var/bench/soak.json) and the teaching-under-drift acceptance. SOAK_TESTS picks one.
SOAK_TESTS ?= tests/soak
soak: venv
	$(PY) -m pytest -s -m soak $(PYTEST_ARGS) $(SOAK_TESTS)

clean:
	rm -rf var/bench .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
