"""Behaviours pinned after comparing the simulator with a real kube-apiserver (docs/real-control-plane.md)."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from kpo_async.testing.harness import wait_for
from kpo_async.testing.sim import SimCluster, SimConfig


async def _get(sim, path: str, accept: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {sim.token}"}
    if accept is not None:
        headers["Accept"] = accept
    import ssl

    context = ssl.create_default_context(cafile=sim.ca_path)
    async with aiohttp.ClientSession() as session:
        async with session.get(sim.base_url + path, headers=headers, ssl=context) as response:
            return response.status, await response.text()


async def test_log_media_type_is_negotiated_like_the_real_server() -> None:
    async with SimCluster(SimConfig()) as sim:
        import kubernetes_asyncio.client as k8s
        from kubernetes_asyncio import config

        api = await config.new_client_from_config(config_file=sim.kubeconfig_path)
        async with api:
            body = {
                "metadata": {"name": "talker"},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "base", "image": "alpine", "command": ["sh", "-c", "echo hi"]}],
                },
            }
            await k8s.CoreV1Api(api).create_namespaced_pod("default", body)
        path = "/api/v1/namespaces/default/pods/talker/log"
        answer = await wait_for(lambda: _get(sim, path, "*/*"), lambda got: got[0] == 200 and "hi" in got[1])
        assert answer == (200, "hi\n")
        assert (await _get(sim, path, None))[0] == 200
        assert (await _get(sim, path, "application/json, */*"))[0] == 200
        status, text = await _get(sim, path, "text/plain")
        assert status == 406
        assert "only the following media types are accepted" in text


async def test_a_busy_shell_loop_does_not_freeze_the_simulator() -> None:
    async with SimCluster(SimConfig()) as sim:
        import kubernetes_asyncio.client as k8s
        from kubernetes_asyncio import config

        api = await config.new_client_from_config(config_file=sim.kubeconfig_path)
        async with api:
            core = k8s.CoreV1Api(api)
            body = {
                "metadata": {"name": "spinner"},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "base", "image": "alpine", "command": ["sh", "-c", "while true; do :; done"]}
                    ],
                },
            }
            await core.create_namespaced_pod("default", body)
            await wait_for(
                lambda: core.read_namespaced_pod("spinner", "default"), lambda p: p.status.phase == "Running"
            )
            started = time.monotonic()
            await asyncio.wait_for(core.read_namespaced_pod("spinner", "default"), 5)
            assert time.monotonic() - started < 2
            await core.delete_namespaced_pod("spinner", "default", grace_period_seconds=0)
