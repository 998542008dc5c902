"""Control endpoints under /sim/v1 (same server, same auth) for tests in other processes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from kpo_async.testing.sim.errors import ApiError, bad_request, not_found
from kpo_async.testing.sim.faults import Fault
from kpo_async.testing.sim.httpio import json_response
from kpo_async.testing.sim.shell.io import parse_signal
from kpo_async.testing.sim.util import parse_quantity

if TYPE_CHECKING:
    from kpo_async.testing.sim.nodes import NodeLifecycle
    from kpo_async.testing.sim.server import SimCluster


async def _json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as e:
        raise bad_request(f"invalid JSON: {e}") from e


class ControlApi:
    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster

    def routes(self) -> list[web.RouteDef]:
        pod = "/sim/v1/namespaces/{ns}/pods/{name}"
        return [
            web.get("/sim/v1/faults", self.list_faults),
            web.post("/sim/v1/faults", self.add_fault),
            web.delete("/sim/v1/faults", self.clear_faults),
            web.delete("/sim/v1/faults/{id}", self.remove_fault),
            web.get("/sim/v1/stats", self.stats),
            web.post("/sim/v1/stats/reset", self.reset_stats),
            web.post(pod + "/evict", self.evict),
            web.post(pod + "/containers/{container}/signal", self.signal),
            web.post(pod + "/lose-node", self.lose_node_of),
            web.post("/sim/v1/nodes/{node}/lose", self.lose_node),
            web.post("/sim/v1/nodes/{node}/restore", self.restore_node),
            web.delete("/sim/v1/nodes/{node}", self.delete_node),
            web.patch("/sim/v1/nodes/{node}/allocatable", self.set_allocatable),
        ]

    # --- nodes (nodes.py) ---
    def _nodes(self) -> NodeLifecycle:
        assert self.cluster.nodes is not None
        return self.cluster.nodes

    async def lose_node(self, request: web.Request) -> web.Response:
        """The node stops reporting: {"node": N, "pods": ["ns/name" marked by the taint manager]}."""
        node = request.match_info["node"]
        return json_response({"node": node, "pods": self._nodes().lose(node)})

    async def lose_node_of(self, request: web.Request) -> web.Response:
        node = self.cluster._node_of(request.match_info["ns"], request.match_info["name"])
        return json_response({"node": node, "pods": self._nodes().lose(node)})

    async def restore_node(self, request: web.Request) -> web.Response:
        self._nodes().restore(request.match_info["node"])
        return json_response({"status": "Success"})

    async def delete_node(self, request: web.Request) -> web.Response:
        """Pod GC: {"node": N, "pods": ["ns/name" failed and force-deleted]}."""
        node = request.match_info["node"]
        return json_response({"node": node, "pods": self._nodes().delete(node)})

    async def set_allocatable(self, request: web.Request) -> web.Response:
        """{"cpu": "2", ...}: the node's new allocatable (and capacity); answers the result."""
        data = await _json(request)
        if not isinstance(data, dict) or not data:
            raise bad_request('a JSON object of resources, e.g. {"cpu": "2"}')
        values = {str(k): str(v) for k, v in data.items()}
        for key, value in values.items():
            try:
                parse_quantity(value)
            except ValueError as e:
                raise bad_request(f"invalid quantity for {key}: {value!r}") from e
        return json_response(
            {"allocatable": self._nodes().set_allocatable(request.match_info["node"], values)}
        )

    async def list_faults(self, request: web.Request) -> web.Response:
        return json_response({"faults": [f.to_dict() for f in self.cluster.faults.list()]})

    async def add_fault(self, request: web.Request) -> web.Response:
        data = await _json(request)
        if not isinstance(data, dict):
            raise bad_request("a fault is a JSON object")
        try:
            fault = Fault.from_dict(data)
        except (TypeError, ValueError) as e:
            raise bad_request(f"invalid fault: {e}") from e
        self.cluster.faults.add(fault)
        return json_response(fault.to_dict(), 201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.cluster.faults.clear()
        return json_response({"status": "Success"})

    async def remove_fault(self, request: web.Request) -> web.Response:
        if not self.cluster.faults.remove(request.match_info["id"]):
            raise not_found("faults", request.match_info["id"])
        return json_response({"status": "Success"})

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(self.cluster.stats.snapshot())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.cluster.stats.reset()
        return json_response(self.cluster.stats.snapshot())

    async def evict(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        data = await _json(request)
        from kpo_async.testing.sim.server import DEFAULT_EVICTION_MESSAGE

        assert self.cluster.kubelet is not None and self.cluster.store is not None
        if self.cluster.store.get("pods", ns, name) is None:
            raise not_found("pods", name)
        self.cluster.kubelet.evict(ns, name, data.get("message") or DEFAULT_EVICTION_MESSAGE)
        return json_response({"status": "Success"})

    async def signal(self, request: web.Request) -> web.Response:
        """Send a signal to a container's main process; {"signal": "KILL", "reason": "OOMKilled"}."""
        ns, name, container = (
            request.match_info["ns"],
            request.match_info["name"],
            request.match_info["container"],
        )
        data = await _json(request)
        sig = parse_signal(str(data.get("signal", "TERM")))
        if sig is None:
            raise bad_request(f"unknown signal {data.get('signal')!r}")
        assert self.cluster.kubelet is not None
        worker = self.cluster.kubelet.worker(ns, name)
        if worker is None:
            raise not_found("pods", name)
        cs = next((c for c in worker.init_cs + worker.cs if c.name == container), None)
        if cs is None or cs.runtime is None or cs.state != "running":
            raise ApiError(409, f'container "{container}" is not running', "Conflict")
        if data.get("reason"):
            cs.runtime.reason = str(data["reason"])
        cs.runtime.signal(sig)
        return json_response({"status": "Success"})
