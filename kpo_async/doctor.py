"""`kpo-async doctor`: can this machine reach the cluster, and may it do what the operator does?

Resolves the connection exactly as the operator and trigger do (on this host), calls /version,
then asks the API server (SelfSubjectAccessReview) for each permission in `REQUIRED_PERMISSIONS`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from kpo_async.clients import open_client
from kpo_async.connection import ClusterRef
from kpo_async.retry import describe

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
            response = await client.api_client.call_api(
                "/version",
                "GET",
                response_type="object",
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
            print(f"version: {response.get('gitVersion')}")
        except Exception as exc:
            problems.append(f"cannot reach the API server: {describe(exc)}")
            return problems
        print(f"namespace: {namespace}")
        for verb, resource, subresource, why in REQUIRED_PERMISSIONS:
            body = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "namespace": namespace,
                        "verb": verb,
                        "resource": resource,
                        "subresource": subresource,
                    }
                },
            }
            name = f"{verb} {resource}{'/' + subresource if subresource else ''}"
            try:
                review = await client.api_client.call_api(
                    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                    "POST",
                    body=body,
                    response_type="object",
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                )
                allowed = bool((review.get("status") or {}).get("allowed"))
            except Exception as exc:
                problems.append(f"could not check {name}: {describe(exc)}")
                continue
            print(f"  [{'ok' if allowed else 'MISSING'}] {name:<20} {why}")
            if not allowed:
                problems.append(f"missing permission: {name} in namespace {namespace} ({why})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kpo-async doctor", description=__doc__)
    parser.add_argument("--conn-id", default=None, help="Airflow connection id (type kubernetes)")
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
