# kpo-async developer commands. Everything runs from the project's own virtualenv (.venv),
# which the first target that needs it creates and fills.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-fast lint e2e cluster-up cluster-down bench bench-sim bench-triggerer soak soak-ha docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python -e '.[dev,bench,docs]'
	touch $(STAMP)

venv: $(STAMP)

## The main job: the example DAGs under real Airflow against the embedded cluster.
demo: $(STAMP)
	$(BIN)/kpo-async demo

## The test suite: lint, unit, simulator, Airflow (dag.test and real services) tests.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not airflow and not services and not e2e'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check kpo_async triggers tests example_dags

## Real control plane (etcd + kube-apiserver + kube-scheduler + kwok on loopback): docs/real-control-plane.md
cluster-up:
	tools/cluster.sh up

cluster-down:
	tools/cluster.sh down

## e2e suite against it: builds/reuses binaries, starts the control plane unless up, stops what it started
e2e: $(STAMP)
	tools/e2e.sh $(BIN)/python

## A new user's install: build the wheel, install it in a fresh virtualenv, run the demo from it
packaging-test: $(STAMP)
	$(BIN)/python -m pytest -q -m packaging tests/packaging

## Fault-and-soak run: 500 pods through random API faults and triggerer restarts (docs/reliability.md)
soak: $(STAMP)
	$(BIN)/python -m kpo_async.testing.soak --pods 500 --restarts 20 --seed 1

## Triggerer load benchmark, ours vs the official trigger (docs/scale.md)
bench: $(STAMP)
	$(BIN)/kpo-async bench

## The same in a REAL `airflow triggerer` with logs on: 1,000 pods at 1 line/s, official at 300 (docs/scale.md)
BENCH_TRIGGERER_ARGS ?= --pods 1000 --log-rate 1 --duration 120 --design both --official-cap 300
bench-triggerer: $(STAMP)
	$(BIN)/python -m kpo_async.testing.bench.real_triggerer $(BENCH_TRIGGERER_ARGS)

## Two real triggerers (HA) on PostgreSQL, 500 deferred pods, 10 SIGKILLs + graceful stops (docs/reliability.md)
SOAK_HA_ARGS ?= --pods 500 --kills 10 --interval 20 --seed 1
soak-ha: $(STAMP)
	$(BIN)/python -m kpo_async.testing.soak_ha $(SOAK_HA_ARGS)

## The documentation site, strict: any broken link or warning fails
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site build dist *.egg-info
