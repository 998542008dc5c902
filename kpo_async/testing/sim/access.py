"""A minimal authorization layer: permissions can be denied, and SelfSubjectAccessReview answers.

The simulator's one user may do everything except what `SimConfig.denied` lists, as
``"<verb> <resource>"`` strings in the audit-log form `stats.classify` produces (for example
``"create pods/exec"``). A denied request gets the real API server's 403 Status, so tests can
prove that a missing Role rule produces a clear error.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from aiohttp import web

from kpo_async.testing.sim.errors import ApiError
from kpo_async.testing.sim.httpio import error_response, json_response

#: Who the simulator says you are in 403 messages (the real message names the user).
USER = "system:serviceaccount:default:kpo-async-sim"
ACCESS_REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def forbidden(verb: str, resource: str, namespace: str | None, name: str | None) -> web.Response:
    kind, _, sub = resource.partition("/")
    what = f'{kind} "{name}"' if name else kind
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    message = (
        f'{what} is forbidden: User "{USER}" cannot {verb} resource "{kind}"'
        f'{f" (subresource {sub!r})" if sub else ""} in API group ""{where}'
    )
    details: dict[str, Any] = {"kind": kind}
    if name:
        details["name"] = name
    return error_response(ApiError(403, message, "Forbidden", details))


def request_target(path: str) -> tuple[str | None, str | None]:
    """The namespace and object name of a core/v1 request path, when it has them."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] != ["api", "v1"]:
        return None, None
    rest = parts[2:]
    if rest and rest[0] == "watch":
        rest = rest[1:]
    namespace = rest[1] if len(rest) >= 2 and rest[0] == "namespaces" else None
    if namespace is not None:
        rest = rest[2:]
    name = rest[1] if len(rest) >= 2 else None
    return namespace, name


def access_review_route(denied: Collection[str]) -> web.RouteDef:
    async def review(request: web.Request) -> web.Response:
        body = json.loads(await request.read() or b"{}")
        attributes = (body.get("spec") or {}).get("resourceAttributes") or {}
        resource = attributes.get("resource", "")
        if attributes.get("subresource"):
            resource += "/" + attributes["subresource"]
        allowed = f"{attributes.get('verb', '')} {resource}" not in denied
        status: dict[str, Any] = {"allowed": allowed}
        if not allowed:
            status["denied"] = False  # as RBAC answers: no explicit deny, just no rule allowing it
        return json_response(
            {
                "kind": "SelfSubjectAccessReview",
                "apiVersion": "authorization.k8s.io/v1",
                "metadata": {},
                "spec": body.get("spec") or {},
                "status": status,
            },
            201,
        )

    return web.post(ACCESS_REVIEW_PATH, review)
