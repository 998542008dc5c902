# kpo-async developer commands. Everything runs from the project's own virtualenv (.venv),
# which the first target that needs it creates and fills.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo demo-ui test test-fast test-postgres test-airflow30 lint compat e2e cluster-up cluster-down node-up node-down e2e-node compat-node bench bench-sim bench-triggerer bench-end-from-trigger soak soak-ha docs clean ui-deps ui-test ui-screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python -e '.[dev,bench,docs,ui]'
	touch $(STAMP)

venv: $(STAMP)

## The main job: the example DAGs under real Airflow against the embedded cluster.
demo: $(STAMP)
	$(BIN)/kpo-async demo

## The same under the real Airflow services, to watch in the UI (a long pod's log arrives live); Ctrl-C stops it.
demo-ui: $(STAMP)
	$(BIN)/kpo-async demo --ui

## The test suite: lint, unit, simulator, Airflow (dag.test and real services) tests.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not airflow and not services and not e2e'

## The real-services tests on PostgreSQL, the two-triggerer (HA) test included (a SIGKILL, a graceful
## stop, restarts), as CI runs them within `make test`: each module starts (and stops) its own
## PostgreSQL on loopback via tools/postgres.sh, which installs Debian's postgresql first when it is
## missing (as root). docs/reliability.md, section 7. TEST_POSTGRES_SUITES narrows it to a file.
TEST_POSTGRES_SUITES ?= tests/airflow
test-postgres: $(STAMP)
	tools/postgres.sh install
	KPO_ASYNC_TEST_DATABASE=postgres KPO_ASYNC_HA_TEST=1 $(BIN)/python -m pytest -q -m services $(TEST_POSTGRES_SUITES)

## The operator's suites on the lowest supported Airflow (3.0.x), in a second virtualenv. The
## kubernetes client is pinned to .venv's, whose model classes the tests build pods with.
VENV30 := .venv-airflow30
# Pins Airflow 3.0.x needs against newer releases: PyJWT 2.11+ refuses its API tokens (iss=None);
# FastAPI 0.132+ rejects its Task SDK calls (JSON bodies sent without a Content-Type).
AIRFLOW30 ?= 3.0.6
test-airflow30: $(STAMP)
	test -x $(VENV30)/bin/python || $(PYTHON) -m venv $(VENV30)
	$(BIN)/python -m uv pip install --quiet --python $(VENV30)/bin/python -e '.[dev,bench]' \
		'apache-airflow==$(AIRFLOW30)' 'pyjwt<2.11' 'fastapi<0.132' \
		"kubernetes==$$($(BIN)/python -c 'import kubernetes; print(kubernetes.__version__)')"
	# The kinds of disruption (test_disruption_kinds.py, 2 min) ask nothing of Airflow that
	# test_disruptions.py does not: a relaunch re-defers from execute_complete, tested here too.
	$(VENV30)/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/core tests/reliability \
		--ignore=tests/core/test_disruption_kinds.py
	# Real 3.0 services: mark-failed/success deletes the pod without trigger on_kill; a clear runs
	# the task again without orphaning its pod; a triggerer restart keeps it (and loses no line);
	# end_from_trigger=True resumes every task on a worker there, with the same outcomes.
	$(VENV30)/bin/python -m pytest -q -p no:cacheprovider tests/airflow/test_services.py \
		-k '((marking or clearing or (restart and SIGTERM)) and not end_from_trigger) or end_from_trigger_outcomes'

## Style, the layout rules (runtime apart from the workshop, acyclic, small) and strict types on the runtime
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check kpo_async triggers tests example_dags
	$(BIN)/python tools/check_layout.py
	$(BIN)/mypy

## Compatibility suite: tests/compat DAGs under the official operator and kpo-async (docs/compat.md)
compat: $(STAMP)
	$(BIN)/python -m pytest -q -m compat tests/compat

## Real control plane (etcd + kube-apiserver + kube-scheduler + kwok on loopback): docs/real-control-plane.md
cluster-up:
	tools/cluster.sh up

cluster-down:
	tools/cluster.sh down

## e2e suite against it: builds/reuses binaries, starts the control plane unless up, stops what it started
e2e: $(STAMP)
	tools/e2e.sh $(BIN)/python

## A real node (kubelet + containerd + runc, local images) on the control plane above: docs/real-control-plane.md
node-up:
	tools/cluster.sh status >/dev/null 2>&1 || tools/cluster.sh up
	tools/node.sh up

node-down:
	tools/node.sh down

## The e2e suite on the real node: real containers; starts (and stops) what is not already running
e2e-node: $(STAMP)
	tools/e2e-node.sh $(BIN)/python

## The compatibility suite on the real node (control plane + kubelet/containerd/runc, local images): docs/compat.md
compat-node: $(STAMP)
	tools/compat-node.sh $(BIN)/python

## A new user's install: build the wheel, install it in a fresh virtualenv, run the demo from it
packaging-test: $(STAMP)
	$(BIN)/python -m pytest -q -m packaging tests/packaging

## Browser test of the Airflow UI (tests/ui): headless Chromium from Debian's packages, driven by Selenium
ui-deps:
	tools/ui-deps.sh

ui-test: $(STAMP) ui-deps
	$(BIN)/python -m pytest -q -s -m ui tests/ui

## The same, writing its screenshots into docs/img (the getting-started page shows them)
ui-screenshots: $(STAMP) ui-deps
	KPO_ASYNC_SCREENSHOTS=docs/img $(BIN)/python -m pytest -q -s -m ui tests/ui

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

## The real services on PostgreSQL, 100 mapped pods each: ours, ours with end_from_trigger=True, the official
## deferrable KPO; worker starts per task, pod end -> success p50/p99, wall time (docs/scale.md)
BENCH_EFT_ARGS ?= --pods 100
bench-end-from-trigger: $(STAMP)
	$(BIN)/python -m kpo_async.testing.bench.end_from_trigger $(BENCH_EFT_ARGS)

## Two real triggerers (HA) on PostgreSQL, 500 deferred pods, 10 SIGKILLs + graceful stops (docs/reliability.md)
SOAK_HA_ARGS ?= --pods 500 --kills 10 --interval 20 --seed 1
soak-ha: $(STAMP)
	$(BIN)/python -m kpo_async.testing.soak_ha $(SOAK_HA_ARGS)

## The documentation site, strict: any broken link or warning fails
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site build dist *.egg-info
