"""`kpo-async doctor`: can this host reach the cluster, and may it do what the operator does?

Resolves the connection exactly as the operator and trigger do (on this host), calls /version,
checks that the namespace exists, then asks the API server (SelfSubjectAccessReview) for each
permission in `REQUIRED_PERMISSIONS`. Every request goes through `kpo_async.api`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import Any

from kpo_async import api
from kpo_async.clients import ClusterClient, open_client
from kpo_async.connection import DEFAULT_CONN_ID, ClusterRef
from kpo_async.errors import Forbidden, InvalidArgumentError, KpoAsyncError, NotFound, Refused
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

#: Where the documentation explains a problem, by page title (the project publishes no site URL).
RBAC_PAGE = '"RBAC: the least privilege kpo-async needs" in the kpo-async documentation'
CONNECTIONS_PAGE = '"Connections and kubeconfig" in the kpo-async documentation'

#: The operator's argument names, as doctor's flags (connection errors name the former).
_FLAGS = (
    ("task argument ", ""),
    ("in_cluster=True", "--in-cluster"),
    ("kubernetes_conn_id", "--conn-id"),
    ("cluster_context", "--context"),
    ("config_file", "--config-file"),
    ("in_cluster", "--in-cluster"),
)

DESCRIPTION = (
    "Check, from this host, what kpo-async's operator and trigger need: the cluster connection "
    "resolves and the API server answers, the namespace exists, and the identity has every "
    "permission they use. Run it on a worker and on the triggerer: each resolves the connection "
    "itself. The cluster is chosen as the operator chooses it: the Airflow connection "
    f"(--conn-id, default {DEFAULT_CONN_ID}); when that connection does not exist, this host's "
    "kubeconfig ($KUBECONFIG or ~/.kube/config), then in-cluster credentials."
)
EPILOG = (
    "Exit status: 0 when everything is in place, 1 otherwise (each problem is printed on stderr "
    f"with its fix). Permissions and the Role that grants them: {RBAC_PAGE}."
)


async def check(ref: ClusterRef, namespace: str | None) -> list[str]:
    async with open_client(ref) as client:
        namespace = namespace or client.config.namespace or "default"
        print(f"cluster: {client.config.source} (context {client.config.context or 'in-cluster'})")
        print(f"server:  {client.host}")
        try:
            version = await _request_json(client, "/version", "GET")
        except Exception as exc:
            return [
                f"cannot reach the API server {client.host}: {describe(exc)}. Fix: check that this host "
                "can reach it, and that --conn-id / --config-file / --context name the cluster "
                f"you mean (see {CONNECTIONS_PAGE})"
            ]
        print(f"version: {version.get('gitVersion')}")
        missing_namespace = await _namespace_problem(client, namespace)
        if missing_namespace:
            return [missing_namespace]
        return await _permission_problems(client, namespace)


async def _namespace_problem(client: ClusterClient, namespace: str) -> str | None:
    """Why the operator could not run pods in `namespace`, if it cannot: absent or being deleted."""
    try:
        found = await _request_json(client, f"/api/v1/namespaces/{namespace}", "GET", verb="get")
    except NotFound:
        found = None
    except (Forbidden, Refused):
        # The operator needs no access to Namespace objects (a Role cannot grant it): ask the
        # pods endpoint instead, with a dry run that creates nothing.
        found = await _namespace_seen_by_dry_run(client, namespace)
    if found is None:
        print(f"namespace: {namespace} (NOT FOUND)")
        return (
            f"namespace {namespace!r} does not exist on this cluster. Fix: create it "
            f"(kubectl create namespace {namespace}), or run doctor with --namespace set to the "
            "namespace your tasks use (their namespace argument, else the connection's or the "
            "kubeconfig context's namespace)"
        )
    if (found.get("status") or {}).get("phase") == "Terminating":
        print(f"namespace: {namespace} (TERMINATING)")
        return f"namespace {namespace!r} is being deleted: no pod can be created in it. Fix: use another one"
    print(f"namespace: {namespace} ({'exists' if found else 'exists; cannot read the Namespace object'})")
    return None


async def _namespace_seen_by_dry_run(client: ClusterClient, namespace: str) -> dict[str, Any] | None:
    """{} when a dry-run pod reaches `namespace` (or the answer says nothing), None when it is absent."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "kpo-async-doctor-"},
        "spec": {"containers": [{"name": "base", "image": "kpo-async-doctor"}]},
    }
    path = f"/api/v1/namespaces/{namespace}/pods"
    try:
        await _request_json(client, path, "POST", pod, query=[("dryRun", "All")], verb="create")
    except NotFound:
        return None
    except KpoAsyncError:
        pass  # forbidden, or refused by admission: the permission checks below tell more
    return {}


async def _permission_problems(client: ClusterClient, namespace: str) -> list[str]:
    problems: list[str] = []
    for verb, resource, subresource, why in REQUIRED_PERMISSIONS:
        name = f"{verb} {resource}{'/' + subresource if subresource else ''}"
        attributes = {"namespace": namespace, "verb": verb, "resource": resource, "subresource": subresource}
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
            problems.append(
                f"missing permission: {name} in namespace {namespace} ({why}). Fix: grant it in the "
                f"Role bound to this identity (see {RBAC_PAGE})"
            )
    if len(problems) == len(REQUIRED_PERMISSIONS):
        problems.append(
            f"this identity may do nothing in namespace {namespace}: no Role there is bound to it. "
            "Fix: bind the Role to the identity in that namespace, or check --namespace"
        )
    return problems


async def _request_json(
    client: ClusterClient,
    path: str,
    method: str,
    body: Any = None,
    *,
    query: list[tuple[str, str]] | None = None,
    verb: str | None = None,
) -> dict[str, Any]:
    return await api.call(
        lambda: client.api_client.call_api(
            path,
            method,
            query_params=query or [],
            body=body,
            auth_settings=["BearerToken"],
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            _preload_content=False,
        ),
        what=f"{method} {path}",
        verb=verb or ("create" if method == "POST" else "get"),
        resource=path.rsplit("/", 1)[-1],
        attempts=1,  # a check reports what it sees, once
    )


def in_doctor_terms(exc: Exception) -> str:
    """A failure to resolve the cluster, naming doctor's flags instead of the operator's arguments."""
    if not isinstance(exc, InvalidArgumentError):
        return str(exc)
    text = f"Invalid {exc.argument}: {exc.problem}. Fix: {exc.fix}"
    for argument, flag in _FLAGS:
        text = re.sub(rf"(?<![\w-]){re.escape(argument)}(?!\w)", flag, text)
    return f"{text} (see {CONNECTIONS_PAGE})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kpo-async doctor", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument(
        "--conn-id",
        default=DEFAULT_CONN_ID,
        metavar="ID",
        help="the Airflow connection the tasks use (their kubernetes_conn_id; default "
        f"{DEFAULT_CONN_ID}, and when that one does not exist, this host's default kubeconfig)",
    )
    parser.add_argument(
        "--config-file",
        metavar="PATH",
        help="a kubeconfig file to use instead of the connection's (the tasks' config_file)",
    )
    parser.add_argument(
        "--context", metavar="NAME", help="the kubeconfig context to use (the tasks' cluster_context)"
    )
    parser.add_argument(
        "--in-cluster",
        action="store_true",
        default=None,
        help="use the service account of the pod doctor runs in (the tasks' in_cluster=True)",
    )
    parser.add_argument(
        "--namespace",
        metavar="NAME",
        help="the namespace the tasks run pods in (default: the connection's or the kubeconfig "
        "context's namespace, else 'default')",
    )
    parser.add_argument("--json", action="store_true", help='also print the problems as {"problems": [...]}')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    ref = ClusterRef(
        conn_id=args.conn_id,
        config_file=args.config_file,
        cluster_context=args.context,
        in_cluster=args.in_cluster,
    )
    try:
        problems = asyncio.run(check(ref, args.namespace))
    except Exception as exc:
        problems = [in_doctor_terms(exc)]
    if args.json:
        print(json.dumps({"problems": problems}))
    sys.stdout.flush()  # keep the report's order when stdout and stderr go to the same place
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr, flush=True)
    print(_summary(problems))
    return 1 if problems else 0


def _summary(problems: list[str]) -> str:
    if not problems:
        return "OK: everything the operator needs is in place"
    if any(problem.startswith("missing permission") for problem in problems):
        return f"{len(problems)} problem(s) found (the Role that grants every permission: {RBAC_PAGE})"
    return f"{len(problems)} problem(s) found"
