# The two commands of the README's Quick start are `make demo` and `make test`.
# Each one creates or updates .venv by itself, so they work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test lint bench soak clean venv

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "make: '$(PYTHON) -m venv' failed; on Debian/Ubuntu install it with: apt-get install python3-venv" >&2; \
	  rm -rf $(VENV); exit 1; }
	@$(PIP) --upgrade pip
	@$(PIP) -r requirements-dev.txt
	@$(PIP) --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@$(PY) manage.py demo

# pytest exits 5 when it collects no test: that is not a failure of the suite.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) manage.py check
	$(PY) -m pytest || test $$? -eq 5

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Eight benchmark programs: cluster_conf (load/validate/edit/diff), the engine (placement, replan, resource
# trees), ricci (configuration push to 3/16/64 agents on loopback; needs about 4 GiB of RAM), cman (kill -9
# of a lab node to "fenced and new view installed", 20 trials), rgmanager (failover of a web service to HTTP
# on its new node, relocation, clustat on 3 and 16 nodes), luci (dashboard server time on a synthetic 16-node,
# 1000-service cluster), luci_live (a service state change on a node to the browser showing it) and api (the REST
# status GET's server time on that cluster, and its throughput under daphne and uvicorn on loopback).
bench: $(STAMP)
	$(PY) -m bench
	$(PY) -m bench.engine
	$(PY) -m bench.ricci
	$(PY) -m bench.cman
	$(PY) -m bench.rgmanager
	$(PY) -m bench.luci
	$(PY) -m bench.luci_live
	$(PY) -m bench.api

# The nemesis test for 30 minutes instead of the 2 of `make test` (NEMESIS_SEED=<n> replays a schedule), and the
# API contract test with 200 generated requests per operation instead of 10 (random seed; API_SOAK_EXAMPLES=<n>).
soak: $(STAMP)
	NEMESIS_DURATION=1800 $(PY) -m pytest tests/test_nemesis.py -q -s -p no:cacheprovider
	API_SOAK=1 $(PY) -m pytest tests/test_api_contract.py -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
