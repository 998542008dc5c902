"""`SimControl`: a small async client for the simulator's /sim/v1 control endpoints."""

from __future__ import annotations

import base64
import ssl
from typing import Any

import aiohttp
import yaml

from kpo_async.testing.sim.faults import Fault


class SimControl:
    """Talks to a running simulator using its kubeconfig (server, CA and token).

    ``async with SimControl(kubeconfig_path) as ctl: await ctl.add_fault(Fault(...))``
    """

    def __init__(self, kubeconfig_path: str) -> None:
        with open(kubeconfig_path) as f:
            cfg = yaml.safe_load(f)
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next((u["user"] for u in cfg.get("users", []) if u["name"] == ctx.get("user")), {}) or {}
        self.server: str = cluster["server"].rstrip("/")
        self._headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
        self._ssl: ssl.SSLContext | bool = False
        if self.server.startswith("https"):
            ctx_ssl = ssl.create_default_context()
            if cluster.get("certificate-authority-data"):
                ctx_ssl.load_verify_locations(
                    cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
                )
            elif cluster.get("certificate-authority"):
                ctx_ssl.load_verify_locations(cafile=cluster["certificate-authority"])
            self._ssl = ctx_ssl
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SimControl:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers)
        async with self._session.request(method, self.server + path, json=body, ssl=self._ssl) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {data}")
            return data

    async def add_fault(self, fault: Fault | dict[str, Any]) -> str:
        """Install a fault; returns its id."""
        body = fault.to_dict() if isinstance(fault, Fault) else dict(fault)
        body.pop("hits", None)
        return (await self._request("POST", "/sim/v1/faults", body))["id"]

    async def remove_fault(self, fault_id: str) -> None:
        await self._request("DELETE", f"/sim/v1/faults/{fault_id}")

    async def clear_faults(self) -> None:
        await self._request("DELETE", "/sim/v1/faults")

    async def faults(self) -> list[dict[str, Any]]:
        return (await self._request("GET", "/sim/v1/faults"))["faults"]

    async def stats(self) -> dict[str, Any]:
        return await self._request("GET", "/sim/v1/stats")

    async def reset_stats(self) -> dict[str, Any]:
        return await self._request("POST", "/sim/v1/stats/reset")

    async def evict(self, namespace: str, name: str, message: str | None = None) -> None:
        body = {"message": message} if message else {}
        await self._request("POST", f"/sim/v1/namespaces/{namespace}/pods/{name}/evict", body)

    async def signal(
        self, namespace: str, name: str, container: str, signal: str = "TERM", reason: str | None = None
    ) -> None:
        """Signal a container's main process (e.g. signal="KILL", reason="OOMKilled")."""
        body: dict[str, Any] = {"signal": signal}
        if reason:
            body["reason"] = reason
        await self._request(
            "POST", f"/sim/v1/namespaces/{namespace}/pods/{name}/containers/{container}/signal", body
        )

    # --- the node (nodes.py): lost, back, deleted (pod GC), capacity ---
    async def lose_node(self, node: str) -> list[str]:
        """The node stops reporting; returns the "ns/name" of the pods the taint manager marked."""
        return (await self._request("POST", f"/sim/v1/nodes/{node}/lose"))["pods"]

    async def lose_node_of(self, namespace: str, name: str) -> str:
        """Lose the node the pod is bound to; returns the node's name."""
        return (await self._request("POST", f"/sim/v1/namespaces/{namespace}/pods/{name}/lose-node"))["node"]

    async def restore_node(self, node: str) -> None:
        """The node reports again (or registers again after `delete_node`)."""
        await self._request("POST", f"/sim/v1/nodes/{node}/restore")

    async def delete_node(self, node: str) -> list[str]:
        """Delete the Node; returns the "ns/name" of the pods pod GC failed and force-deleted."""
        return (await self._request("DELETE", f"/sim/v1/nodes/{node}"))["pods"]

    async def set_node_allocatable(self, node: str, values: dict[str, str]) -> dict[str, str]:
        """Change the node's allocatable, e.g. {"cpu": "2"}; returns the new allocatable."""
        return (await self._request("PATCH", f"/sim/v1/nodes/{node}/allocatable", values))["allocatable"]
