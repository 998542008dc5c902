# kpo-async developer commands. Everything runs from the project's own virtualenv (.venv),
# which the first target that needs it creates and fills.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test-airflow30 venv demo test test-fast lint e2e cluster-up cluster-down bench bench-sim soak docs clean

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

## The operator's suites on the lowest supported Airflow (3.0.x), in a second virtualenv. The
## kubernetes client is pinned to .venv's, whose model classes the tests build pods with.
VENV30 := .venv-airflow30
AIRFLOW30 ?= 3.0.6
test-airflow30: $(STAMP)
	test -x $(VENV30)/bin/python || $(PYTHON) -m venv $(VENV30)
	$(BIN)/python -m uv pip install --quiet --python $(VENV30)/bin/python -e '.[dev,bench]' \
		'apache-airflow==$(AIRFLOW30)' \
		"kubernetes==$$($(BIN)/python -c 'import kubernetes; print(kubernetes.__version__)')"
	$(VENV30)/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/core tests/reliability

## Style, the layout rules (runtime apart from the workshop, acyclic, small) and strict types on the runtime
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check kpo_async triggers tests example_dags
	$(BIN)/python tools/check_layout.py
	$(BIN)/mypy

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

## The documentation site, strict: any broken link or warning fails
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site build dist *.egg-info
