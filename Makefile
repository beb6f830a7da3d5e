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

.PHONY: demo test lint bench soak clean venv

venv: $(STAMP)

$(STAMP):
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,model]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# `linewatch model build` (it skips a model that is up to date; exit 3 = not in this build
# yet), then the whole stack under the supervisor, with the simulated line, until Ctrl-C.
demo: venv
	@rc=0; $(LW) model build || rc=$$?; \
	if [ $$rc -eq 3 ]; then echo "make demo: 'linewatch model build' not available yet; skipped"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi
	$(LW) up --sim --sim-args "$(SIM_ARGS)"

# All tiers but benchmarks. Exit status 5 (no tests collected) counts as success.
test: venv
	@rc=0; $(PY) -m pytest -m "not bench and not soak" $(PYTEST_ARGS) $(TESTS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests collected"; exit 0; fi; exit $$rc

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

soak: venv
	@if [ -d tests/soak ]; then $(PY) -m pytest -s -m soak $(PYTEST_ARGS) tests/soak; \
	else echo "make soak: no soak tests yet"; fi

clean:
	rm -rf var/bench .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
