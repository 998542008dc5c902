"""Pod calls the operator makes: create or adopt, delete, mark finished, read events.

All go through the async client with bounded retries; a 403 becomes `PermissionDeniedError`
naming the verb the Role lacks.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes_asyncio.client import V1Pod
from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.clients import ClusterClient
from kpo_async.errors import InvalidArgumentError, KpoAsyncError, PermissionDeniedError
from kpo_async.identity import MANAGED_LABEL
from kpo_async.pod_state import PodState
from kpo_async.retry import json_body, with_retries

T = TypeVar("T")

#: Set on a pod whose result a task has consumed; such a pod is never adopted again.
FINALIZED_LABEL = "kpo-async.io/finalized"


async def call(fn: Callable[[], Awaitable[T]], *, what: str, verb: str, resource: str = "pods") -> T:
    """`with_retries`, with a 403 turned into an error that names the missing permission."""
    try:
        return await with_retries(fn, what=what)
    except ApiException as exc:
        if exc.status == 403:
            reason = _status_message(exc)
            if "cannot " not in reason:  # a ResourceQuota or PodSecurity refusal, not RBAC
                raise KpoAsyncError(f"{what} was refused (403): {reason}") from None
            raise PermissionDeniedError(
                f"{what} was forbidden (403): the operator's identity needs the {verb!r} verb on "
                f"{resource} in this namespace. Fix: grant it in the Role (see docs/rbac.md)."
            ) from None
        raise


def _status_message(exc: ApiException) -> str:
    """The `message` of the Status the API server answered with (it explains a refusal)."""
    try:
        return str(json.loads(exc.body).get("message") or exc.reason or "")
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason or "")


async def find_task_pods(client: ClusterClient, namespace: str, selector: str) -> list[PodState]:
    """Unfinalized pods matching `selector`, newest first."""

    async def list_pods() -> Any:
        return await json_body(
            client.core.list_namespaced_pod(
                namespace, label_selector=f"{selector},!{FINALIZED_LABEL}", _preload_content=False
            )
        )

    body = await call(list_pods, what=f"listing pods in {namespace}", verb="list")
    items = sorted(
        body.get("items") or [], key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True
    )
    # A pod being deleted is on its way out: never adopt it.
    return [state for state in map(PodState.from_api, items) if not state.deleting]


async def create_pod(client: ClusterClient, pod: V1Pod) -> PodState | None:
    """Create `pod`; None if a pod of that name already exists (the caller decides on adoption)."""
    namespace = pod.metadata.namespace

    async def create() -> Any:
        return await json_body(client.core.create_namespaced_pod(namespace, pod, _preload_content=False))

    try:
        body = await call(create, what=f"creating pod {namespace}/{pod.metadata.name}", verb="create")
    except ApiException as exc:
        if exc.status == 409:
            return None
        raise api_error(exc, f"creating pod {namespace}/{pod.metadata.name}") from None
    return PodState.from_api(body)


async def read_pod(client: ClusterClient, namespace: str, name: str) -> PodState | None:
    async def read() -> Any:
        return await json_body(client.core.read_namespaced_pod(name, namespace, _preload_content=False))

    try:
        return PodState.from_api(await call(read, what=f"reading pod {namespace}/{name}", verb="get"))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


async def delete_pod(
    client: ClusterClient, namespace: str, name: str, grace_period_seconds: int | None = None
) -> bool:
    """Delete the pod; False if it was already gone."""

    async def delete() -> Any:
        return await json_body(
            client.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=grace_period_seconds, _preload_content=False
            )
        )

    try:
        await call(delete, what=f"deleting pod {namespace}/{name}", verb="delete")
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


async def mark_finalized(client: ClusterClient, namespace: str, name: str) -> None:
    """Label a kept pod as consumed so that no later try adopts it."""
    body = {"metadata": {"labels": {FINALIZED_LABEL: "true"}}}

    async def patch() -> Any:
        return await json_body(
            client.core.patch_namespaced_pod(
                name, namespace, body, _content_type="application/merge-patch+json", _preload_content=False
            )
        )

    try:
        await call(patch, what=f"labelling pod {namespace}/{name}", verb="patch")
    except ApiException as exc:
        if exc.status != 404:
            raise


async def pod_events(client: ClusterClient, namespace: str, name: str) -> list[dict[str, Any]]:
    async def list_events() -> Any:
        return await json_body(
            client.core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name}", _preload_content=False
            )
        )

    body = await call(
        list_events, what=f"listing events of {namespace}/{name}", verb="list", resource="events"
    )
    return body.get("items") or []


def api_error(exc: ApiException, what: str) -> KpoAsyncError:
    """Turn an API rejection into an error carrying the server's own explanation."""
    message = _status_message(exc)
    if exc.status == 404 and "namespaces" in message:
        return InvalidArgumentError(
            "namespace", f"{what}: {message}", "create the namespace first, or pass an existing one"
        )
    if exc.status == 422:
        return InvalidArgumentError(
            "pod spec",
            f"{what}: the API server rejected it: {message}",
            "correct the named field in the operator arguments or pod template",
        )
    return KpoAsyncError(f"{what} failed: HTTP {exc.status}: {message}")


__all__ = [
    "FINALIZED_LABEL",
    "MANAGED_LABEL",
    "create_pod",
    "delete_pod",
    "find_task_pods",
    "mark_finalized",
    "pod_events",
    "read_pod",
]
