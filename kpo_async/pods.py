"""Pod calls the operator makes: create or adopt, read, delete, mark finished, read events.

Every call goes through `kpo_async.api` (typed errors, bounded retries; a 403 names the verb).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from kubernetes_asyncio.client import V1Pod

from kpo_async import api
from kpo_async.clients import ClusterClient
from kpo_async.errors import Conflict, InvalidArgumentError, NotFound, Unprocessable
from kpo_async.identity import TASK_SEEN_FINALIZER
from kpo_async.pod_state import PodState

#: Set on a pod whose result a task has consumed; such a pod is never adopted again.
FINALIZED_LABEL = "kpo-async.io/finalized"


async def find_task_pods(client: ClusterClient, namespace: str, selector: str) -> list[PodState]:
    """Unfinalized pods matching `selector` that are not being deleted, newest first."""
    list_pods = partial(client.core.list_namespaced_pod, namespace, _preload_content=False)
    request = partial(list_pods, label_selector=f"{selector},!{FINALIZED_LABEL}")
    body = await api.call(request, what=f"listing pods in {namespace}", verb="list")
    states = list(map(PodState.from_api, body.get("items") or []))
    # A pod being deleted is on its way out: never adopted, and released (its try's worker is gone).
    for leaving in (state for state in states if state.deleting):
        await release_pod(client, namespace, leaving.name)
    return sorted((s for s in states if not s.deleting), key=lambda s: s.created_at or 0.0, reverse=True)


async def create_pod(client: ClusterClient, pod: V1Pod) -> PodState | None:
    """Create `pod`; None if a pod of that name already exists (the caller decides on adoption)."""
    namespace = pod.metadata.namespace
    what = f"creating pod {namespace}/{pod.metadata.name}"
    request = partial(client.core.create_namespaced_pod, namespace, pod, _preload_content=False)
    try:
        body = await api.call(request, what=what, verb="create")
    except Conflict:
        return None
    except NotFound as exc:
        if "namespaces" not in exc.message:
            raise
        raise InvalidArgumentError(
            "namespace", f"{what}: {exc.message}", "create the namespace first, or pass an existing one"
        ) from None
    except Unprocessable as exc:
        raise InvalidArgumentError(
            "pod spec",
            f"{what}: the API server rejected it: {exc.message}",
            "correct the named field in the operator arguments or pod template (no retry was made: "
            "the API server would refuse the same spec again)",
        ) from None
    return PodState.from_api(body)


async def _unless_gone(
    request: Callable[[], Awaitable[Any]], *, what: str, verb: str
) -> dict[str, Any] | None:
    """`api.call`'s JSON body; None when the pod does not exist (any more)."""
    try:
        return await api.call(request, what=what, verb=verb)
    except NotFound:
        return None


async def read_pod_json(client: ClusterClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The pod as the API server returns it; None if it does not exist."""
    request = partial(client.core.read_namespaced_pod, name, namespace, _preload_content=False)
    return await _unless_gone(request, what=f"reading pod {namespace}/{name}", verb="get")


async def read_pod(client: ClusterClient, namespace: str, name: str) -> PodState | None:
    body = await read_pod_json(client, namespace, name)
    return None if body is None else PodState.from_api(body)


async def delete_pod(client: ClusterClient, namespace: str, name: str) -> bool:
    """Release our finalizer, then delete the pod (with its own grace period); False if it was
    already gone. In this order, an interruption between the two leaves an ordinary pod (as one
    before the delete did), never one stuck Terminating."""
    await release_pod(client, namespace, name)
    request = partial(client.core.delete_namespaced_pod, name, namespace, _preload_content=False)
    return await _unless_gone(request, what=f"deleting pod {namespace}/{name}", verb="delete") is not None


async def release_pod(client: ClusterClient, namespace: str, name: str, **metadata: dict[str, str]) -> bool:
    """Remove our finalizer (only ours: a strategic merge patch) so that the pod's deletion
    completes, merging `metadata` as `patch_metadata` does; False if the pod is gone."""
    release = {"$deleteFromPrimitiveList/finalizers": [TASK_SEEN_FINALIZER]}
    return await patch_metadata(client, namespace, name, what="releasing", **release, **metadata)


async def patch_metadata(
    client: ClusterClient, namespace: str, name: str, *, what: str, **metadata: Any
) -> bool:
    """Merge `metadata` (labels, annotations) into the pod's; False if the pod is gone."""
    request = partial(  # type: ignore[call-arg]  # _content_type is passed on to the request
        client.core.patch_namespaced_pod,
        name,
        namespace,
        {"metadata": metadata},
        _content_type="application/strategic-merge-patch+json",
        _preload_content=False,
    )
    return await _unless_gone(request, what=f"{what} pod {namespace}/{name}", verb="patch") is not None


def container_env(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The env entries (API JSON) of every init and main container of `pod`."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return [env for container in containers for env in container.get("env") or []]


async def pod_events(client: ClusterClient, namespace: str, name: str) -> list[dict[str, Any]]:
    list_events = partial(client.core.list_namespaced_event, namespace, _preload_content=False)
    request = partial(list_events, field_selector=f"involvedObject.name={name}")
    what = f"listing events of {namespace}/{name}"
    return (await api.call(request, what=what, verb="list", resource="events")).get("items") or []
