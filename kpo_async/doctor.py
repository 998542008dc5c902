"""`kpo-async doctor`: can this machine reach the cluster, and may it do what the operator does?

Resolves the connection exactly as the operator and trigger do (on this host), calls /version,
then asks the API server (SelfSubjectAccessReview) for each permission in `REQUIRED_PERMISSIONS`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from kpo_async import api
from kpo_async.clients import ClusterClient, open_client
from kpo_async.connection import DEFAULT_CONN_ID, ClusterRef
from kpo_async.retry import Backoff, describe

#: (verb, resource, subresource, why): exactly what the operator and trigger use. Keep in step
#: with docs/rbac.md.
REQUIRED_PERMISSIONS: tuple[tuple[str, str, str, str], ...] = (
    ("create", "pods", "", "submit the pod"),
    ("get", "pods", "", "read the pod when the watch is silent, and on adoption"),
    ("list", "pods", "", "find a pod to reattach to; the shared watch's list"),
    ("watch", "pods", "", "the shared watch"),
    ("patch", "pods", "", "record the log cursor and XCom result; mark kept pods finished"),
    ("delete", "pods", "", "on_finish_action / on_kill"),
    ("get", "pods", "log", "stream the base container's log"),
    ("create", "pods", "exec", "read the XCom result and stop the sidecar"),
    ("get", "pods", "exec", "WebSocket exec is authorized as get by some API servers"),
    ("list", "events", "", "explain startup failures; log_events_on_failure"),
)


async def check(ref: ClusterRef, namespace: str | None) -> list[str]:
    problems: list[str] = []
    async with open_client(ref) as client:
        namespace = namespace or client.default_namespace or "default"
        print(f"cluster: {client.config.source} (context {client.config.context or 'in-cluster'})")
        print(f"server:  {client.host}")
        try:
            version = await _request_json(client, "/version", "GET")
        except Exception as exc:
            return [f"cannot reach the API server: {describe(exc)}"]
        print(f"version: {version.get('gitVersion')}")
        print(f"namespace: {namespace}")
        for verb, resource, subresource, why in REQUIRED_PERMISSIONS:
            name = f"{verb} {resource}{'/' + subresource if subresource else ''}"
            attributes = {
                "namespace": namespace,
                "verb": verb,
                "resource": resource,
                "subresource": subresource,
            }
            body = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            }
            try:
                review = await _request_json(
                    client, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "POST", body
                )
            except Exception as exc:
                problems.append(f"could not check {name}: {describe(exc)}")
                continue
            allowed = bool((review.get("status") or {}).get("allowed"))
            print(f"  [{'ok' if allowed else 'MISSING'}] {name:<20} {why}")
            if not allowed:
                problems.append(f"missing permission: {name} in namespace {namespace} ({why})")
    return problems


async def _request_json(client: ClusterClient, path: str, method: str, body: Any = None) -> dict[str, Any]:
    return await api.call(
        lambda: client.api_client.call_api(
            path,
            method,
            body=body,
            auth_settings=["BearerToken"],
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            _preload_content=False,
        ),
        what=f"{method} {path}",
        verb="create" if method == "POST" else "get",
        resource=path.rsplit("/", 1)[-1],
        backoff=Backoff(attempts=1),  # a check reports what it sees, once
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kpo-async doctor", description=__doc__)
    parser.add_argument(
        "--conn-id",
        default=DEFAULT_CONN_ID,
        help="Airflow connection id, as the operator's kubernetes_conn_id (default "
        f"{DEFAULT_CONN_ID}; absent means this host's default kubeconfig)",
    )
    parser.add_argument("--config-file", default=None, help="kubeconfig path")
    parser.add_argument("--context", default=None, help="kubeconfig context")
    parser.add_argument("--in-cluster", action="store_true", default=None)
    parser.add_argument("--namespace", default=None)
    parser.add_argument("--json", action="store_true", help="print the problems as JSON")
    args = parser.parse_args(argv)
    ref = ClusterRef(
        conn_id=args.conn_id,
        config_file=args.config_file,
        cluster_context=args.context,
        in_cluster=args.in_cluster,
    )
    try:
        problems = asyncio.run(check(ref, args.namespace))
    except Exception as exc:
        problems = [str(exc)]
    if args.json:
        print(json.dumps({"problems": problems}))
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print(
        "OK: everything the operator needs is in place"
        if not problems
        else f"{len(problems)} problem(s) found (see docs/rbac.md)"
    )
    return 1 if problems else 0
