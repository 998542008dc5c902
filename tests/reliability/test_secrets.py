"""Secrets never leak: a bearer token in the kubeconfig and secret values of environment variables.

The operator runs end to end (success, a failing pod, bad input, an unreachable or refusing API
server) while every structlog event and every stdlib log record (DEBUG and up, every logger,
third-party clients included) is captured. The unique secret strings must appear in none of them,
nor in the serialized trigger kwargs, the TriggerEvent payloads, nor any exception's message,
repr or traceback (causes included).
"""

from __future__ import annotations

import json
import logging
import secrets
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client import V1EnvVar
from structlog.testing import capture_logs

from kpo_async.airflow_compat import TaskDeferred
from kpo_async.testing.sim import Fault, SimCluster
from tests.reliability.conftest import (
    FakeTI,
    behavior,
    context_for,
    live_pods,
    make_operator,
    new_cluster,
    run_trigger,
    short_jitter,
    stored_kwargs,
    trigger_from,
)

TOKEN = f"kpo-secret-token-{secrets.token_hex(16)}"
WRONG_TOKEN = f"kpo-secret-wrong-{secrets.token_hex(16)}"
DB_PASSWORD = f"kpo-secret-password-{secrets.token_hex(16)}"
API_KEY = f"kpo-secret-apikey-{secrets.token_hex(16)}"
SECRETS = (TOKEN, WRONG_TOKEN, DB_PASSWORD, API_KEY)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimCluster]:
    """The embedded cluster, its bearer token (written into its kubeconfig) planted."""
    with new_cluster(token=TOKEN).in_thread() as cluster:
        assert TOKEN in Path(cluster.kubeconfig_path).read_text()
        yield cluster


class Evidence:
    """Everything a secret could leak into."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, value: Any) -> None:
        if isinstance(value, BaseException):
            text = "".join(traceback.format_exception(value)) + repr(value) + str(value)
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, default=repr)
        self.texts.append((where, text))

    def assert_clean(self) -> None:
        assert self.texts, "nothing was checked"
        for where, text in self.texts:
            for secret in SECRETS:
                assert secret not in text, f"a secret leaked into {where}: ...{_around(text, secret)}..."


def _around(text: str, secret: str) -> str:
    at = text.index(secret)
    return text[max(0, at - 200) : at + len(secret) + 50]


@pytest.fixture
def evidence(caplog: pytest.LogCaptureFixture) -> Iterator[Evidence]:
    caplog.set_level(logging.DEBUG)  # every logger, third-party clients included
    found = Evidence()
    with capture_logs() as events:
        yield found
    for event in events:
        found.add(f"structlog event {event.get('event')!r}", {k: repr(v) for k, v in event.items()})
    for record in caplog.records:
        found.add(
            f"log record of {record.name}", record.getMessage() + repr(record.args) + (record.exc_text or "")
        )
        if record.exc_info and record.exc_info[1] is not None:
            found.add(f"exception logged by {record.name}", record.exc_info[1])
    found.assert_clean()


SECRET_ENV = {
    "env_vars": [V1EnvVar(name="DB_PASSWORD", value=DB_PASSWORD), V1EnvVar(name="API_KEY", value=API_KEY)]
}


def run(op, ti: FakeTI, evidence: Evidence, *, on_triggerer: dict[str, Any] | None = None) -> Any:
    """Submit, trigger, finalize, recording every artefact on the way."""
    try:
        op.execute(context_for(ti))
    except TaskDeferred as deferred:
        classpath, kwargs = stored_kwargs(deferred)
        evidence.add("the serialized trigger kwargs", [classpath, kwargs])
        evidence.add("the TaskDeferred", repr(deferred) + str(deferred.__dict__))
        if on_triggerer is not None:  # the triggerer host sees another cluster configuration
            kwargs = {**kwargs, **on_triggerer, "cluster": {**kwargs["cluster"], **on_triggerer["cluster"]}}
        event = run_trigger(trigger_from(classpath, kwargs))
        evidence.add("the TriggerEvent payload", event)
        try:
            return op.execute_complete(context_for(ti), event)
        except Exception as exc:
            evidence.add("the exception of execute_complete", exc)
            raise
    except Exception as exc:
        evidence.add("the exception of execute", exc)
        raise
    raise AssertionError("execute neither deferred nor failed")


def test_success_and_failure_leak_nothing(sim, evidence: Evidence) -> None:
    ok = make_operator(
        sim,
        "secret-ok",
        env_vars={"DB_PASSWORD": DB_PASSWORD, "PLAIN": "visible"},
        do_xcom_push=True,
        annotations=behavior(duration_seconds=0.5, log_lines_per_second=10, xcom={"rows": 3}),
    )
    assert run(ok, FakeTI("secret-ok"), evidence) == {"rows": 3}
    failing = make_operator(
        sim,
        "secret-fail",
        **SECRET_ENV,
        annotations=behavior(duration_seconds=0.3, log_lines_per_second=10, exit_code=3),
    )
    with pytest.raises(Exception, match="exited with code 3"):
        run(failing, FakeTI("secret-fail"), evidence)
    assert live_pods(sim, "secret-") == []


def test_api_errors_leak_nothing(sim, evidence: Evidence) -> None:
    sim.faults.add(Fault(method="POST", path=r"/pods$", status=500, times=1))
    sim.faults.add(Fault(method="GET", path=r"/log$", status=503, times=1))
    sim.faults.add(Fault(path=r"/exec$", status=500, times=1))
    op = make_operator(
        sim,
        "secret-faults",
        **SECRET_ENV,
        do_xcom_push=True,
        annotations=behavior(duration_seconds=0.3, xcom=1),
    )
    assert run(op, FakeTI("secret-faults"), evidence) == 1


def _kubeconfig(sim: SimCluster, tmp_path: Path, name: str, **change: Any) -> str:
    config = yaml.safe_load(Path(sim.kubeconfig_path).read_text())
    if "token" in change:
        config["users"][0]["user"]["token"] = change.pop("token")
    if "server" in change:
        config["clusters"][0]["cluster"]["server"] = change.pop("server")
    text = yaml.safe_dump(config) + change.pop("append", "")
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "case",
    ["invalid-label", "unknown-context", "broken-kubeconfig", "wrong-token", "unreachable-server"],
)
def test_bad_input_and_refused_credentials_leak_nothing(
    sim, evidence: Evidence, tmp_path: Path, case: str
) -> None:
    kwargs: dict[str, Any] = dict(SECRET_ENV)
    if case == "invalid-label":
        kwargs["labels"] = {"team": "data eng"}
    elif case == "unknown-context":
        kwargs["cluster_context"] = "prod"
    elif case == "broken-kubeconfig":
        kwargs["config_file"] = _kubeconfig(sim, tmp_path, "broken", append=f"users: [ {{token: {TOKEN}\n")
    elif case == "wrong-token":
        kwargs["config_file"] = _kubeconfig(sim, tmp_path, "wrong", token=WRONG_TOKEN)
    elif case == "unreachable-server":
        kwargs["config_file"] = _kubeconfig(sim, tmp_path, "closed", server="https://127.0.0.1:9")
    op = make_operator(sim, f"secret-{case}", **kwargs)
    with short_jitter(), pytest.raises(Exception):  # noqa: B017 - each fails its own way; the text matters
        run(op, FakeTI(f"secret-{case}"), evidence)
    assert live_pods(sim, f"secret-{case}") == []


@pytest.mark.parametrize("case", ["wrong-token", "broken-kubeconfig"])
def test_a_triggerer_with_a_bad_kubeconfig_leaks_nothing(
    sim, evidence: Evidence, tmp_path: Path, case: str
) -> None:
    """The triggerer host's kubeconfig holds another (wrong) token, or is broken around the token."""
    name = f"secret-triggerer-{case}"
    op = make_operator(sim, name, **SECRET_ENV, annotations=behavior(duration_seconds=30))
    if case == "wrong-token":
        config = _kubeconfig(sim, tmp_path, "triggerer-wrong", token=WRONG_TOKEN)
    else:
        config = _kubeconfig(sim, tmp_path, "triggerer-broken", append=f"users: [ {{token: {WRONG_TOKEN}\n")
    # the 401 reaches the trigger at its fallback read of the pod (see test_bad_input): make it soon
    triggerer = {"cluster": {"config_file": config}, "fallback_poll_seconds": 1}
    with pytest.raises(Exception, match="failed on the triggerer"):
        run(op, FakeTI(name), evidence, on_triggerer=triggerer)
    assert live_pods(sim, name) == []
