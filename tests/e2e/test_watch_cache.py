"""The API server's watch cache, against the real control plane (kwok only; the node plays no part).

In a file of its own so that it runs last: the cache must have dropped an early event, and it drops
only events older than 75 s. By the end of the e2e session the cluster is minutes old, so the test
no longer sleeps for it (it used to wait 80 s at the start of the session).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from kubernetes_asyncio import client

from tests.e2e.conftest import ANN, Cluster, pod_manifest, stream_lines

pytestmark = [pytest.mark.e2e, pytest.mark.kwok_only]

#: The watch cache evicts events older than this (kube-apiserver's eventFreshDuration, 75 s), and no
#: younger ones while it has room.
EVENT_FRESH_SECONDS = 80


async def oldest_pod_activity_age(admin_api: client.ApiClient) -> float:
    """Seconds since the oldest pod event the cluster still lists (a pod scheduled, pulled, ...): the
    watch cache's oldest pod changes are about that old. 0 when there is none."""
    events = await client.CoreV1Api(admin_api).list_event_for_all_namespaces(
        field_selector="involvedObject.kind=Pod"
    )
    times = [e.metadata.creation_timestamp for e in events.items if e.metadata.creation_timestamp]
    return (dt.datetime.now(dt.timezone.utc) - min(times)).total_seconds() if times else 0.0


async def test_watch_from_an_expired_resource_version(
    cluster: Cluster, admin_api, operator_api, pod_name, cleanup_pods, observed_facts
):
    """A watch resuming from a resourceVersion the watch cache no longer holds gets a 410 ERROR event.

    Watches are served from the API server's watch cache, not etcd. A fresh cache accepts any
    resourceVersion since it started, so the cache must first drop an event: it only evicts events
    older than 75 s (otherwise it grows). Pods changed that long ago by the end of the session, or the
    test waits for the rest; new events (the patches) then make it evict.
    """
    ns, name = cluster.namespace, pod_name("rv")
    cleanup_pods.append(name)
    v1 = client.CoreV1Api(operator_api)
    await v1.create_namespaced_pod(ns, pod_manifest(name, {ANN + "pending": "600s"}))
    await asyncio.sleep(max(0.0, EVENT_FRESH_SECONDS - await oldest_pod_activity_age(admin_api)))
    for i in range(400):
        await v1.patch_namespaced_pod(name, ns, {"metadata": {"annotations": {"e2e/counter": str(i)}}})
    code, lines = await stream_lines(
        operator_api, f"/api/v1/namespaces/{ns}/pods?watch=1&resourceVersion=1", max_lines=1, timeout=15
    )
    first = json.loads(lines[0])
    observed_facts["watch_too_old_resource_version"] = {"http_status": code, "first_line": first}
    assert code == 200 and first["type"] == "ERROR"
    assert (first["object"]["code"], first["object"]["reason"]) == (410, "Expired")
    assert first["object"]["message"].startswith("too old resource version: 1 (")
