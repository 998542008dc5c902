"""Protobuf request bodies (what kubectl's typed `create` commands send), without kubectl."""

from __future__ import annotations

import json
import ssl

import aiohttp

from kpo_async.testing.sim import SimCluster
from kpo_async.testing.sim.protobuf import MAGIC, MEDIA_TYPE


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (lengths below 128 here)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = field(1, api_version.encode()) + field(2, kind.encode())
    return MAGIC + field(1, type_meta) + field(2, raw)


async def post(cluster: SimCluster, path: str, body: bytes) -> tuple[int, dict]:
    ssl_ctx = ssl.create_default_context(cafile=cluster.ca_path)
    headers = {"Authorization": f"Bearer {cluster.token}", "Content-Type": MEDIA_TYPE}
    async with aiohttp.ClientSession() as session:
        async with session.post(cluster.base_url + path, data=body, headers=headers, ssl=ssl_ctx) as r:
            return r.status, json.loads(await r.read())


async def test_a_protobuf_namespace_is_created_with_its_labels(cluster: SimCluster) -> None:
    label = field(1, b"team") + field(2, b"data")
    metadata = field(1, b"airflow-jobs") + field(2, b"") + field(11, label)
    status, created = await post(
        cluster, "/api/v1/namespaces", envelope("v1", "Namespace", field(1, metadata))
    )
    assert status == 201, created
    assert created["metadata"]["name"] == "airflow-jobs"
    assert created["metadata"]["labels"] == {"team": "data", "kubernetes.io/metadata.name": "airflow-jobs"}
    assert "generateName" not in created["metadata"]  # proto2 sends unset strings as ""


async def test_a_protobuf_configmap_keeps_its_data(cluster: SimCluster) -> None:
    raw = field(1, field(1, b"settings")) + field(2, field(1, b"mode") + field(2, b"fast"))
    status, created = await post(
        cluster, "/api/v1/namespaces/default/configmaps", envelope("v1", "ConfigMap", raw)
    )
    assert status == 201, created
    assert created["data"] == {"mode": "fast"}


async def test_a_protobuf_body_of_another_kind_is_refused_with_415(cluster: SimCluster) -> None:
    status, answer = await post(
        cluster, "/api/v1/namespaces/default/pods", envelope("v1", "Pod", field(1, field(1, b"p")))
    )
    assert status == 415 and answer["reason"] == "UnsupportedMediaType"
    assert "not Pod" in answer["message"]


async def test_a_malformed_protobuf_body_is_a_bad_request(cluster: SimCluster) -> None:
    status, answer = await post(cluster, "/api/v1/namespaces", MAGIC + b"\x0a\x7f")
    assert status == 400 and "malformed protobuf" in answer["message"]
