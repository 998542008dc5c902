"""The kube-apiserver routes: pods (+log, exec, eviction), events, namespaces, nodes, discovery."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from typing import Any

import yaml
from aiohttp import web

from kpo_async.testing.sim import discovery, protobuf, quota
from kpo_async.testing.sim.config import SimConfig
from kpo_async.testing.sim.disruption import EVICTION_API, add_disruption_target
from kpo_async.testing.sim.errors import (
    ApiError,
    Cause,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from kpo_async.testing.sim.events import EventRecorder
from kpo_async.testing.sim.exec import serve_exec
from kpo_async.testing.sim.httpio import error_response, json_response, stream_response
from kpo_async.testing.sim.kubelet import Kubelet
from kpo_async.testing.sim.logs import LogOptions
from kpo_async.testing.sim.objects import ObjectsApi, admit_pod, default_service_account
from kpo_async.testing.sim.patch import apply_patch
from kpo_async.testing.sim.selectors import parse_field_selector, parse_label_selector
from kpo_async.testing.sim.stats import Stats
from kpo_async.testing.sim.store import RESOURCES, Obj, Store
from kpo_async.testing.sim.strict_fields import check_strict_pod
from kpo_async.testing.sim.table import table, wants_table
from kpo_async.testing.sim.util import dumps, fmt_time, new_uid, parse_rfc3339
from kpo_async.testing.sim.validation import (
    apply_generate_name,
    check_body_namespace,
    default_namespace,
    default_pod,
    validate_metadata,
    validate_namespace,
    validate_pod,
)
from kpo_async.testing.sim.watch import serve_watch

PROTECTED_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


async def read_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise bad_request("the body of the request was empty")
    ctype = request.content_type or "application/json"
    if ctype == protobuf.MEDIA_TYPE:
        return protobuf.decode_object(raw)
    try:
        if "yaml" in ctype:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise bad_request(f"error decoding request body: {e}") from e


def _list_bytes(
    kind: str,
    rv: int,
    items: list[bytes],
    extra_meta: dict[str, Any] | None = None,
    api_version: str = "v1",
) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if extra_meta:
        meta.update(extra_meta)
    return (
        b'{"kind":"'
        + kind.encode()
        + b'List","apiVersion":"'
        + api_version.encode()
        + b'","metadata":'
        + dumps(meta)
        + b',"items":['
        + b",".join(items)
        + b"]}"
    )


def _body_of(obj: Obj) -> dict[str, Any]:
    return obj.body if obj.body is not None else json.loads(obj.raw)


class Api:
    def __init__(
        self,
        config: SimConfig,
        store: Store,
        kubelet: Kubelet,
        events: EventRecorder,
        stats: Stats,
        server_address: str = "127.0.0.1:0",
    ) -> None:
        self.config = config
        self.store = store
        self.kubelet = kubelet
        self.events = events
        self.stats = stats
        self.server_address = server_address
        self._bg: set[asyncio.Task[Any]] = set()

    def routes(self) -> list[web.RouteDef]:
        ns_pods = "/api/v1/namespaces/{ns}/pods"
        pod = ns_pods + "/{name}"
        return [
            web.get("/version", self.version),
            web.get("/version/", self.version),
            web.get("/healthz", self.healthz),
            web.get("/livez", self.healthz),
            web.get("/readyz", self.healthz),
            web.get("/api", self.api_versions),
            web.get("/api/", self.api_versions),
            web.get("/api/v1", self.api_v1),
            web.get("/api/v1/", self.api_v1),
            web.get("/apis", self.apis),
            web.get("/apis/", self.apis),
            web.get("/openapi/v3", self.openapi_v3),
            web.get("/openapi/v3/", self.openapi_v3),
            web.get("/openapi/v3/api/v1", self.openapi_v3_group),
            web.get("/openapi/v3/apis/{group}/v1", self.openapi_v3_group),
            # pods
            web.get("/api/v1/pods", self.list_pods_all),
            web.get("/api/v1/watch/pods", self.list_pods_all),
            web.get(ns_pods, self.list_pods),
            web.get("/api/v1/watch/namespaces/{ns}/pods", self.list_pods),
            web.get("/api/v1/watch/namespaces/{ns}/pods/{name}", self.watch_pod),
            web.post(ns_pods, self.create_pod),
            web.delete(ns_pods, self.delete_pods),
            web.get(pod, self.get_pod),
            web.put(pod, self.replace_pod),
            web.patch(pod, self.patch_pod),
            web.delete(pod, self.delete_pod),
            web.get(pod + "/status", self.get_pod),
            web.get(pod + "/log", self.pod_log),
            web.get(pod + "/exec", self.pod_exec),
            web.post(pod + "/exec", self.pod_exec),
            web.post(pod + "/eviction", self.pod_eviction),
            # events
            web.get("/api/v1/events", self.list_events_all),
            web.get("/api/v1/watch/events", self.list_events_all),
            web.get("/api/v1/namespaces/{ns}/events", self.list_events),
            web.get("/api/v1/watch/namespaces/{ns}/events", self.list_events),
            web.post("/api/v1/namespaces/{ns}/events", self.create_event),
            web.get("/api/v1/namespaces/{ns}/events/{name}", self.get_event),
            # namespaces
            web.get("/api/v1/namespaces", self.list_namespaces),
            web.get("/api/v1/watch/namespaces", self.list_namespaces),
            web.post("/api/v1/namespaces", self.create_namespace),
            web.get("/api/v1/namespaces/{name}", self.get_namespace),
            web.patch("/api/v1/namespaces/{name}", self.patch_namespace),
            web.delete("/api/v1/namespaces/{name}", self.delete_namespace),
            # nodes
            web.get("/api/v1/nodes", self.list_nodes),
            web.get("/api/v1/watch/nodes", self.list_nodes),
            web.get("/api/v1/nodes/{name}", self.get_node),
            web.get("/apis/scheduling.k8s.io/v1", self.api_scheduling_v1),
            web.get("/apis/scheduling.k8s.io/v1/", self.api_scheduling_v1),
            *ObjectsApi(self.store, self._list_or_watch, self._render, self._require_namespace).routes(),
        ]

    # --- discovery ---
    async def version(self, request: web.Request) -> web.Response:
        return json_response(discovery.VERSION)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", content_type="text/plain")

    async def api_versions(self, request: web.Request) -> web.Response:
        return json_response(discovery.api_versions(self.server_address))

    async def api_v1(self, request: web.Request) -> web.Response:
        return json_response(discovery.api_resource_list())

    async def api_scheduling_v1(self, request: web.Request) -> web.Response:
        return json_response(discovery.scheduling_resource_list())

    async def apis(self, request: web.Request) -> web.Response:
        return json_response(discovery.api_group_list())

    async def openapi_v3(self, request: web.Request) -> web.Response:
        return json_response(discovery.openapi_v3_root())

    async def openapi_v3_group(self, request: web.Request) -> web.Response:
        document = discovery.openapi_v3_group(request.match_info.get("group", ""))
        if document is None:
            raise web.HTTPNotFound()
        return json_response(document)

    # --- generic list / watch / get ---
    async def _list_or_watch(
        self, request: web.Request, resource: str, ns: str | None, force_watch: bool = False
    ) -> web.StreamResponse:
        q = request.query
        res = RESOURCES[resource]
        label_match = parse_label_selector(q.get("labelSelector"))
        field_match = parse_field_selector(q.get("fieldSelector"), res.field_keys)
        as_table = wants_table(request.headers.get("Accept", ""))
        watching = force_watch or _truthy(q.get("watch")) or request.path.startswith("/api/v1/watch/")
        if watching:
            return await serve_watch(
                request, self.store, self.stats, self.config, resource, ns, label_match, field_match, as_table
            )
        items = [
            o
            for o in self.store.list(resource, ns)
            if (label_match is None or label_match(o.labels))
            and (field_match is None or field_match(o.fields))
        ]
        rv = self.store.rv
        extra: dict[str, Any] = {}
        cont = q.get("continue")
        if cont:
            try:
                token = json.loads(base64.urlsafe_b64decode(cont.encode()))
                start, rv = token["start"], int(token["rv"])
            except (ValueError, KeyError, TypeError) as e:
                raise bad_request(f"continue key is not valid: {e}") from e
            if rv < self.store.history_floor:
                raise ApiError(
                    410,
                    "The provided continue parameter is too old to display a consistent list result. You can "
                    "start a new list without the continue parameter.",
                    "Expired",
                )
            items = [o for o in items if f"{o.ns}/{o.name}" > start]
        limit = int(q.get("limit") or 0)
        if limit > 0 and len(items) > limit:
            last = items[limit - 1]
            token = {"rv": rv, "start": f"{last.ns}/{last.name}"}
            extra["continue"] = base64.urlsafe_b64encode(dumps(token)).decode()
            extra["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if as_table:
            t = table(resource, [_body_of(o) for o in items], str(rv), q.get("includeObject", "Metadata"))
            t["metadata"].update(extra)
            return json_response(t)
        return json_response(_list_bytes(res.kind, rv, [o.item() for o in items], extra, res.api_version))

    def _get_obj(self, resource: str, ns: str, name: str) -> Obj:
        obj = self.store.get(resource, ns, name)
        if obj is None:
            raise not_found(resource, name)
        return obj

    def _render(self, request: web.Request, obj: Obj, status: int = 200) -> web.Response:
        if wants_table(request.headers.get("Accept", "")):
            return json_response(
                table(
                    obj.resource.name,
                    [_body_of(obj)],
                    str(obj.rv),
                    request.query.get("includeObject", "Metadata"),
                ),
                status,
            )
        return json_response(obj.full(), status)

    def _require_namespace(self, ns: str) -> dict[str, Any]:
        obj = self.store.get("namespaces", "", ns)
        if obj is None:
            raise not_found("namespaces", ns)
        assert obj.body is not None
        return obj.body

    # --- pods ---
    async def list_pods_all(self, request: web.Request) -> web.StreamResponse:
        return await self._list_or_watch(request, "pods", None)

    async def list_pods(self, request: web.Request) -> web.StreamResponse:
        return await self._list_or_watch(request, "pods", request.match_info["ns"])

    async def watch_pod(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        ns = request.match_info["ns"]
        field = parse_field_selector(f"metadata.name={name}", RESOURCES["pods"].field_keys)
        return await serve_watch(request, self.store, self.stats, self.config, "pods", ns, None, field)

    async def get_pod(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if _truthy(request.query.get("watch")):
            field = parse_field_selector(f"metadata.name={name}", RESOURCES["pods"].field_keys)
            return await serve_watch(request, self.store, self.stats, self.config, "pods", ns, None, field)
        return self._render(request, self._get_obj("pods", ns, name))

    async def create_pod(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        body = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a Pod object")
        if body.get("kind") not in (None, "Pod"):
            raise bad_request(
                f"the kind of the object ({body.get('kind')}) does not match the resource (pods)"
            )
        check_strict_pod(body, request.query.get("fieldValidation"))
        check_body_namespace(body, ns)
        ns_body = self._require_namespace(ns)
        if ns_body.get("status", {}).get("phase") == "Terminating":
            name = body.get("metadata", {}).get("name") or body.get("metadata", {}).get("generateName", "")
            raise ApiError(
                403,
                f'pods "{name}" is forbidden: unable to create new content in namespace {ns} '
                "because it is being terminated",
                "Forbidden",
                {"name": name, "kind": "pods"},
            )
        apply_generate_name(body["metadata"])
        validate_pod(body)
        name = body["metadata"]["name"]
        admit_pod(self.store, body, ns)
        if self.store.get("pods", ns, name) is not None:
            raise already_exists("pods", name)
        default_pod(body, ns)
        quota.admit(self.store, body, ns)
        if request.query.get("dryRun"):
            return json_response(body, 201)
        obj = self.store.create("pods", body)
        self.kubelet.admit(body)
        return json_response(obj.full(), 201)

    def _check_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Pods are mostly immutable; metadata (labels, annotations...) may change."""
        name = old["metadata"]["name"]
        for key in ("name", "namespace", "uid", "creationTimestamp"):
            if new["metadata"].get(key) != old["metadata"].get(key) and new["metadata"].get(key) is not None:
                raise invalid(
                    "Pod",
                    name,
                    [Cause(f"metadata.{key}", "FieldValueInvalid", "Invalid value: field is immutable")],
                )
        if new.get("spec") != old.get("spec"):
            raise invalid(
                "Pod",
                name,
                [
                    Cause(
                        "spec",
                        "FieldValueForbidden",
                        "Forbidden: pod updates may not change fields other than "
                        "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                        "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
                        "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it "
                        "was previously negative)",
                    )
                ],
            )
        causes: list[Cause] = []
        validate_metadata(new["metadata"], causes)
        if causes:
            raise invalid("Pod", name, causes)

    def _commit_metadata(self, obj: Obj, new_meta: dict[str, Any], expected_rv: str | None) -> Obj:
        pod = obj.body
        assert pod is not None
        name = pod["metadata"]["name"]
        if expected_rv and expected_rv != pod["metadata"]["resourceVersion"]:
            raise conflict("pods", name)
        keep = {
            k: pod["metadata"][k]
            for k in ("resourceVersion", "uid", "creationTimestamp", "generation")
            if k in pod["metadata"]
        }
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if k in pod["metadata"]:
                keep[k] = pod["metadata"][k]
        merged = {**new_meta, **keep}
        merged["name"], merged["namespace"] = pod["metadata"]["name"], pod["metadata"]["namespace"]
        for k in ("labels", "annotations"):
            if merged.get(k) == {} and k not in pod["metadata"]:
                merged.pop(k)
        if merged.get("finalizers") == []:
            merged.pop("finalizers")
        added = set(merged.get("finalizers") or ()) - set(pod["metadata"].get("finalizers") or ())
        if added and "deletionTimestamp" in keep:
            message = "Forbidden: no new finalizers can be added if the object is being deleted, "
            message += f"found new finalizers {sorted(added)}"
            raise invalid("Pod", name, [Cause("metadata.finalizers", "FieldValueForbidden", message)])
        if merged == pod["metadata"]:
            return obj
        pod["metadata"] = merged
        if keep.get("deletionGracePeriodSeconds") == 0 and not merged.get("finalizers"):
            # The last finalizer of a pod deleted (its kubelet done): the object goes now.
            self.kubelet.forget(pod["metadata"]["namespace"], name)
            final = self.store.delete("pods", pod["metadata"]["namespace"], name, pod)
            assert final is not None
            return final
        return self.store.update("pods", pod)

    async def patch_pod(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        obj = self._get_obj("pods", ns, name)
        pod = obj.body
        assert pod is not None
        patch = await read_body(request)
        current = {k: copy.deepcopy(v) for k, v in pod.items() if k != "status"}
        new = apply_patch(current, patch, request.content_type)
        if not isinstance(new.get("metadata"), dict):
            raise bad_request("metadata must be an object")
        self._check_update(current, new)
        expected = patch.get("metadata", {}).get("resourceVersion") if isinstance(patch, dict) else None
        if request.query.get("dryRun"):
            return json_response(obj.full())
        return self._render(request, self._commit_metadata(obj, new["metadata"], expected))

    async def replace_pod(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        obj = self._get_obj("pods", ns, name)
        pod = obj.body
        assert pod is not None
        new = await read_body(request)
        if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
            raise bad_request("the body of the request must be a Pod object")
        check_strict_pod(new, request.query.get("fieldValidation"))
        if new["metadata"].get("name") != name:
            raise bad_request("the name of the object does not match the name on the URL")
        new.setdefault("spec", pod["spec"])
        self._check_update(pod, new)
        return self._render(
            request, self._commit_metadata(obj, new["metadata"], new["metadata"].get("resourceVersion"))
        )

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                try:
                    opts = json.loads(raw)
                except ValueError as e:
                    raise bad_request(f"error decoding DeleteOptions: {e}") from e
        q = request.query
        if "gracePeriodSeconds" in q:
            try:
                opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError as e:
                raise bad_request("gracePeriodSeconds must be an integer") from e
        if "dryRun" in q:
            opts["dryRun"] = [q["dryRun"]]
        return opts

    def delete_pod_now(self, ns: str, name: str, opts: dict[str, Any]) -> Obj:
        """Start deleting; returns what DELETE answers (the pod with deletionTimestamp, or its last state)."""
        obj = self._get_obj("pods", ns, name)
        pod = obj.body
        assert pod is not None
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != pod["metadata"]["uid"]:
            raise ApiError(
                409,
                f"Precondition failed: UID in precondition: {pre['uid']}, "
                f"UID in object meta: {pod['metadata']['uid']}",
                "Conflict",
                {"name": name, "kind": "pods"},
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != pod["metadata"]["resourceVersion"]:
            raise conflict("pods", name)
        if opts.get("dryRun"):
            return obj
        grace = opts.get("gracePeriodSeconds")
        if grace is None:
            grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        worker = self.kubelet.worker(ns, name)
        phase = pod.get("status", {}).get("phase")
        meta = pod["metadata"]
        if (
            worker is None
            or not pod["spec"].get("nodeName")
            or phase in ("Succeeded", "Failed")
            or grace <= 0
        ):
            if not meta.get("finalizers"):
                self.kubelet.forget(ns, name)
                final = self.store.delete("pods", ns, name, pod)
                assert final is not None
                return final
            grace = 0  # deleted at once but for its finalizers: the object stays until they are gone
        if meta.get("deletionTimestamp"):
            if grace < meta.get("deletionGracePeriodSeconds", grace + 1):
                meta["deletionGracePeriodSeconds"] = grace
                meta["deletionTimestamp"] = fmt_time(time.time() + grace)
                if worker is not None and self.kubelet.node_state == "Ready":
                    worker.terminate(grace)
                return self.store.update("pods", pod)
            return obj
        meta["deletionTimestamp"] = fmt_time(time.time() + grace)
        meta["deletionGracePeriodSeconds"] = grace
        updated = self.store.update("pods", pod)
        if worker is not None and self.kubelet.node_state == "Ready":  # a lost node's pod stays Terminating
            self.kubelet.start_delete(worker, float(grace))
        return updated

    async def delete_pod(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        opts = await self._delete_options(request)
        return json_response(self.delete_pod_now(ns, name, opts).full())

    async def delete_pods(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        q = request.query
        opts = await self._delete_options(request)
        label_match = parse_label_selector(q.get("labelSelector"))
        field_match = parse_field_selector(q.get("fieldSelector"), RESOURCES["pods"].field_keys)
        deleted = []
        for o in self.store.list("pods", ns):
            if (label_match is None or label_match(o.labels)) and (
                field_match is None or field_match(o.fields)
            ):
                deleted.append(self.delete_pod_now(ns, o.name, opts).item())
        return json_response(_list_bytes("Pod", self.store.rv, deleted))

    async def pod_eviction(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        body = await read_body(request)
        opts = (body or {}).get("deleteOptions") or {}
        pod = self._get_obj("pods", ns, name).body
        assert pod is not None
        if not opts.get("dryRun"):
            add_disruption_target(self.store, self.kubelet.worker(ns, name), pod, EVICTION_API)
        self.delete_pod_now(ns, name, opts)
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    # --- logs ---
    def _log_container(self, pod: dict[str, Any], container: str) -> str:
        name = pod["metadata"]["name"]
        spec = pod["spec"]
        mains = [c["name"] for c in spec.get("containers") or []]
        all_names = [c["name"] for c in spec.get("initContainers") or []] + mains
        if not container:
            if len(mains) == 1:
                return mains[0]
            raise bad_request(
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(all_names)}]"
            )
        if container not in all_names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        return container

    def _log_options(self, name: str, q: Any) -> LogOptions:
        causes: list[Cause] = []
        opts = LogOptions(follow=_truthy(q.get("follow")), timestamps=_truthy(q.get("timestamps")))

        def intval(key: str) -> int | None:
            if key not in q:
                return None
            try:
                return int(q[key])
            except ValueError as e:
                raise bad_request(f'{key}: Invalid value: "{q[key]}": must be an integer') from e

        tail = intval("tailLines")
        if tail is not None and tail < 0:
            causes.append(
                Cause(
                    "tailLines",
                    "FieldValueInvalid",
                    f"Invalid value: {tail}: must be greater than or equal to 0",
                )
            )
        limit = intval("limitBytes")
        if limit is not None and limit < 1:
            causes.append(
                Cause("limitBytes", "FieldValueInvalid", f"Invalid value: {limit}: must be greater than 0")
            )
        since_s = intval("sinceSeconds")
        if since_s is not None and since_s < 1:
            causes.append(
                Cause(
                    "sinceSeconds", "FieldValueInvalid", f"Invalid value: {since_s}: must be greater than 0"
                )
            )
        since_t = q.get("sinceTime")
        if since_s is not None and since_t:
            causes.append(
                Cause(
                    "",
                    "FieldValueForbidden",
                    "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
                )
            )
        stream = q.get("stream")
        if stream not in (None, "All", "Stdout", "Stderr"):
            causes.append(
                Cause(
                    "stream",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{stream}": supported values: "All", "Stderr", "Stdout"',
                )
            )
        elif stream in ("Stdout", "Stderr"):
            opts.stream = 1 if stream == "Stdout" else 2
            if tail is not None:
                causes.append(
                    Cause(
                        "tailLines",
                        "FieldValueForbidden",
                        "Forbidden: tailLines is not supported when stream is set",
                    )
                )
        if causes:
            raise invalid("PodLogOptions", name, causes)
        opts.tail_lines = tail
        opts.limit_bytes = limit
        if since_s is not None:
            opts.since_ns = time.time_ns() - since_s * 1_000_000_000
        elif since_t:
            try:
                t = int(parse_rfc3339(since_t))  # the apiserver keeps whole seconds
            except ValueError as e:
                raise bad_request(
                    f'parsing time "{since_t}" as "2006-01-02T15:04:05Z07:00": cannot parse'
                ) from e
            opts.since_ns = t * 1_000_000_000
        return opts

    async def pod_log(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if not _log_accept_ok(request.headers.get("Accept", "")):
            # As kube-apiserver 1.36 answers: the log's media type is negotiated like any object's.
            return error_response(
                ApiError(
                    406,
                    "only the following media types are accepted: application/json, application/yaml, "
                    "application/vnd.kubernetes.protobuf",
                    "NotAcceptable",
                )
            )
        obj = self._get_obj("pods", ns, name)
        pod = obj.body
        assert pod is not None
        q = request.query
        container = self._log_container(pod, q.get("container", ""))
        opts = self._log_options(name, q)
        log = self.kubelet.container_for_log(ns, name, container, _truthy(q.get("previous")))
        if _truthy(q.get("follow")):
            self.stats.followed(name)
        self.stats.gauge("open_log_streams", 1)
        try:
            resp, out = await stream_response(request, "text/plain")
            if log is not None:
                try:
                    async for chunk in log.read(opts):
                        await out.write(chunk)
                except ConnectionResetError:  # client gone or an injected drop
                    pass
            return resp
        finally:
            self.stats.gauge("open_log_streams", -1)

    # --- exec ---
    async def pod_exec(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["ns"], request.match_info["name"]
        obj = self._get_obj("pods", ns, name)
        assert obj.body is not None
        return await serve_exec(request, self.kubelet, self.stats, obj.body)

    # --- events ---
    async def list_events_all(self, request: web.Request) -> web.StreamResponse:
        return await self._list_or_watch(request, "events", None)

    async def list_events(self, request: web.Request) -> web.StreamResponse:
        return await self._list_or_watch(request, "events", request.match_info["ns"])

    async def get_event(self, request: web.Request) -> web.Response:
        return self._render(
            request, self._get_obj("events", request.match_info["ns"], request.match_info["name"])
        )

    async def create_event(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        body = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an Event object")
        check_body_namespace(body, ns)
        self._require_namespace(ns)
        meta = body["metadata"]
        apply_generate_name(meta)
        causes: list[Cause] = []
        validate_metadata(meta, causes)
        if not body.get("involvedObject"):
            causes.append(Cause("involvedObject", "FieldValueRequired", "Required value"))
        if causes:
            raise invalid("Event", meta.get("name", ""), causes)
        if self.store.get("events", ns, meta["name"]) is not None:
            raise already_exists("events", meta["name"])
        body.update(kind="Event", apiVersion="v1")
        meta.update(namespace=ns, uid=new_uid(), creationTimestamp=fmt_time())
        return json_response(self.store.create("events", body).full(), 201)

    # --- namespaces ---
    async def list_namespaces(self, request: web.Request) -> web.StreamResponse:
        return await self._list_or_watch(request, "namespaces", None)

    async def get_namespace(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        return self._render(request, self._get_obj("namespaces", "", name))

    async def create_namespace(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a Namespace object")
        body.setdefault("metadata", {})
        apply_generate_name(body["metadata"])
        validate_namespace(body)
        name = body["metadata"]["name"]
        if self.store.get("namespaces", "", name) is not None:
            raise already_exists("namespaces", name)
        created = self.store.create("namespaces", default_namespace(body))
        # the service-account controller's job: every namespace gets its `default` account
        self.store.create("serviceaccounts", default_service_account(name))
        return json_response(created.full(), 201)

    async def patch_namespace(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        obj = self._get_obj("namespaces", "", name)
        ns = obj.body
        assert ns is not None
        new = apply_patch(copy.deepcopy(ns), await read_body(request), request.content_type)
        causes: list[Cause] = []
        validate_metadata(new.get("metadata") or {}, causes, name_kind="label")
        if causes:
            raise invalid("Namespace", name, causes)
        for k in ("labels", "annotations"):
            if k in new["metadata"]:
                ns["metadata"][k] = new["metadata"][k]
        return json_response(self.store.update("namespaces", ns).full())

    async def delete_namespace(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        obj = self._get_obj("namespaces", "", name)
        ns = obj.body
        assert ns is not None
        if name in PROTECTED_NAMESPACES:
            raise ApiError(
                403,
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                "Forbidden",
                {"name": name, "kind": "namespaces"},
            )
        if ns["status"].get("phase") == "Terminating":
            return json_response(obj.full())
        ns["metadata"]["deletionTimestamp"] = fmt_time()
        ns["status"]["phase"] = "Terminating"
        updated = self.store.update("namespaces", ns)
        task = asyncio.ensure_future(self._finalize_namespace(name))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return json_response(updated.full())

    async def _finalize_namespace(self, name: str) -> None:
        for o in self.store.list("pods", name):
            try:
                self.delete_pod_now(name, o.name, {})
            except ApiError:
                pass
        while self.store.list("pods", name):  # noqa: ASYNC110 - pods go away on their own
            await asyncio.sleep(0.05)
        for resource in (
            "events",
            "secrets",
            "configmaps",
            "persistentvolumeclaims",
            "serviceaccounts",
            "resourcequotas",
        ):
            for o in self.store.list(resource, name):
                self.store.delete(resource, name, o.name)
        self.store.delete("namespaces", "", name)

    # --- nodes ---
    async def list_nodes(self, request: web.Request) -> web.StreamResponse:
        return await self._list_or_watch(request, "nodes", None)

    async def get_node(self, request: web.Request) -> web.StreamResponse:
        return self._render(request, self._get_obj("nodes", "", request.match_info["name"]))


_LOG_ACCEPTED = ("*/*", "application/json", "application/yaml", "application/vnd.kubernetes.protobuf")


def _log_accept_ok(accept: str) -> bool:
    """An absent Accept, or one listing a media type the API server negotiates, gets the log."""
    kinds = [part.split(";")[0].strip() for part in accept.split(",") if part.strip()]
    return not kinds or any(kind in _LOG_ACCEPTED for kind in kinds)
