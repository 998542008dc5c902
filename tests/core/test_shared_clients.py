"""The shared clients live as long as their event loop: shared while it runs, closed when it ends."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings

import pytest

from kpo_async.clients import ClusterClient, close_shared_clients, shared_client
from kpo_async.connection import ClusterRef


def sessions(client: ClusterClient) -> list[object]:
    return [client.api_client.rest_client.pool_manager, client.log_api_client.rest_client.pool_manager]


def test_shared_clients_are_closed_when_their_loop_ends(sim_thread, caplog: pytest.LogCaptureFixture) -> None:
    """`asyncio.run` is how the triggerer, a worker and `airflow dags test`'s inline trigger end a
    loop; a session left open is reported as "Unclosed client session" when collected."""
    ref = ClusterRef(config_file=sim_thread.kubeconfig_path)

    async def two_triggers_then_the_loop_ends() -> tuple[ClusterClient, ...]:
        first, second = await asyncio.gather(shared_client(ref), shared_client(ref))
        await first.core.list_namespaced_pod("default")  # a pooled connection to close
        assert not any(session.closed for session in sessions(first))  # type: ignore[attr-defined]
        await close_shared_clients()  # closed early (a test's teardown): a later caller gets a new one
        third = await shared_client(ref)
        await third.core.list_namespaced_pod("default")
        return first, second, third

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR):
        warnings.simplefilter("always")
        first, second, third = asyncio.run(two_triggers_then_the_loop_ends())
        gc.collect()
    assert first is second  # shared by the triggers of one loop
    assert third is not first
    for client in (first, third):
        assert all(session.closed for session in sessions(client))  # type: ignore[attr-defined]
    unclosed = [str(w.message) for w in caught if "Unclosed" in str(w.message)]
    unclosed += [r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage()]
    assert not unclosed
