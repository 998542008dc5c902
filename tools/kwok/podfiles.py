#!/usr/bin/env python3
"""kwok pod-files helper for the kpo-async e2e control plane (standard library only).

kwok serves `kubectl logs` from a file named in a Logs object and runs `kubectl exec` locally in the
workDir of an Exec object, but both objects are per pod and name fixed paths. This helper watches pods
(with the admin credentials) and, for every pod:

* makes a private directory  $CLUSTER_DIR/pods/<namespace>/<pod>/
      logs/<container>.log   CRI-format log file served by kwok for that container (created empty, or
                             from the pod's `kwok.kpo-async.io/logs` annotation for the first container)
      root/                  the pod's fake container filesystem, the exec workDir
      root/airflow/xcom/     (world-writable) `return.json` comes from the `kwok.kpo-async.io/xcom`
                             annotation unless a test already wrote it;
* creates (server-side apply) a kwok `Logs` and an `Exec` object named like the pod;
* polls for the sidecar stop marker root/airflow/xcom/.kpo-async-done (written by
  `touch /airflow/xcom/.kpo-async-done` or `kill -2 1` through exec, see exec-shim.sh) and then sets the
  pod annotation kwok.kpo-async.io/sidecar-stopped=true, which the kwok Stage
  kpo-pod-sidecars-stopped reacts to;
* mirrors container states next to the log files for the patched kwok
  (tools/kwok-bin/patches/debugging_logs.go): logs/<c>.log.waiting (the waiting reason: reading the log
  then fails "is waiting to start" as on a kubelet) and logs/<c>.log.terminated (a followed log stream
  then ends, as on a kubelet);
* removes the directory and the two objects when the pod is deleted;
* emulates the base container's shell (see "Shell emulation" below) for pods that carry no
  `kwok.kpo-async.io/*` behaviour annotation, so unmodified DAGs run on kwok.

Files a test writes before creating the pod are kept (nothing is overwritten).

Shell emulation
---------------
kwok runs no process. For a pod without any of the behaviour annotations (duration, exit-code, reason,
message, logs, xcom; nor the simulator's `sim.kpo-async.io/behavior`), without
`kwok.kpo-async.io/emulate: "false"` and without a log file a test wrote, seen before its base container
(the first one) started, whose command kpo-async's simulator can interpret (`sh -c SCRIPT`,
`bash -cx SCRIPT`, or a simulator builtin such as `echo`), this helper runs the container's command
through the embedded simulator's shell interpreter (kpo_async/testing/sim/shell, the same code the embedded
cluster runs) in an emulator worker process with a *virtual clock* (`sleep 1` takes no real time), as
soon as it sees the pod created. The result gives:

* the base container's exit code, termination message and run time: patched onto the pod as the
  `exit-code`, `message` and `duration` annotations (plus `emulated: "true"`), which the kwok Stages use;
* the files it wrote into volumes (e.g. /airflow/xcom/return.json): written into the pod's fake root
  right away (never overwriting a file that already exists);
* its stdout/stderr lines with their virtual times: appended to logs/<base>.log by a writer thread at
  startedAt + their time, as a followed log would see them. All remaining lines are flushed before the
  `.terminated` marker ends followed log streams.

Ordering: kwok recomputes a pod's Stage delay on every pod update, and `kpo-pod-base-terminated` uses an
absolute deadline (startedAt + duration), so the annotations only need to land before the *default*
deadline fires. From creation that is at least scheduling + 50 ms (kpo-pod-create) + 500 ms (default
`pending`) + 1-2 s (the default 2 s `duration` counted from a startedAt truncated to the second), i.e.
over 1.5 s; the emulation takes milliseconds. `emulation.json` in the pod's directory records the
measured margin; a lost race is logged as "EMULATION LATE".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import queue
import select
import selectors
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request

PREFIX = "kwok.kpo-async.io/"
ANN_LOGS = PREFIX + "logs"
ANN_XCOM = PREFIX + "xcom"
ANN_STOPPED = PREFIX + "sidecar-stopped"
ANN_DURATION = PREFIX + "duration"
ANN_EXIT_CODE = PREFIX + "exit-code"
ANN_REASON = PREFIX + "reason"
ANN_MESSAGE = PREFIX + "message"
#: Set by this helper on a pod whose base container it emulated.
ANN_EMULATED = PREFIX + "emulated"
#: "false" on a pod: do not emulate it (keeps kwok's defaults: 2 s, exit code 0, empty log).
ANN_EMULATE = PREFIX + "emulate"
#: Any of these on a pod means the test chose the behaviour: no emulation.
BEHAVIOUR_ANNOTATIONS = (
    ANN_DURATION,
    ANN_EXIT_CODE,
    ANN_REASON,
    ANN_MESSAGE,
    ANN_LOGS,
    ANN_XCOM,
    "sim.kpo-async.io/behavior",  # the embedded simulator's behaviour annotation: the test chose
)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DONE_MARKER = ("airflow", "xcom", ".kpo-async-done")
FIELD_MANAGER = "kpo-async-podfiles"
KWOK_API = "/apis/kwok.x-k8s.io/v1alpha1"


def log(msg: str) -> None:
    sys.stderr.write(f"{dt.datetime.now().isoformat(timespec='milliseconds')} podfiles: {msg}\n")
    sys.stderr.flush()


class Api:
    def __init__(self, server: str, ca: str, cert: str, key: str) -> None:
        self.server = server.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)

    def request(self, method: str, path: str, body=None, content_type="application/json", timeout=30):
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"message": raw.decode(errors="replace")}

    def stream(self, path: str, timeout: float):
        req = urllib.request.Request(self.server + path, headers={"Accept": "application/json"})
        return urllib.request.urlopen(req, context=self.ctx, timeout=timeout)


def cri_lines(text: str, start: dt.datetime | None = None) -> str:
    """Format plain text as CRI log lines (one stdout line per input line, 1 ms apart)."""
    start = start or dt.datetime.now(dt.timezone.utc)
    out = []
    for i, line in enumerate(text.splitlines()):
        ts = start + dt.timedelta(milliseconds=i)
        out.append(f"{ts.strftime('%Y-%m-%dT%H:%M:%S')}.{ts.microsecond * 1000:09d}Z stdout F {line}\n")
    return "".join(out)


class PodFiles:
    def __init__(
        self,
        api: Api,
        pods_dir: str,
        shim_dir: str,
        run_as_nobody: bool,
        poll: float,
        emulator: Emulator | None = None,
    ) -> None:
        self.api = api
        self.pods_dir = pods_dir
        self.shim_dir = shim_dir
        self.run_as_nobody = run_as_nobody
        self.poll = poll
        self.lock = threading.Lock()
        # "ns/name" -> {"uid", "containers", "phase", "stopped"}
        self.pods: dict[str, dict] = {}
        self.emulator = emulator
        # "ns/name" -> the emulated log of its base container (pods being emulated)
        self.emulations: dict[str, Emulation] = {}
        self.emulate_queue: queue.Queue = queue.Queue()

    # --- per-pod setup -------------------------------------------------------------------------
    def pod_dir(self, ns: str, name: str) -> str:
        return os.path.join(self.pods_dir, ns, name)

    def setup(self, pod: dict) -> None:
        meta = pod["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        ann = meta.get("annotations") or {}
        containers = [c["name"] for c in pod["spec"]["containers"]]
        d = self.pod_dir(ns, name)
        uid_file = os.path.join(d, ".uid")
        if os.path.exists(uid_file):
            with open(uid_file) as f:
                if f.read().strip() != uid:
                    log(f"{ns}/{name}: stale directory of an older pod with this name, recreating")
                    shutil.rmtree(d, ignore_errors=True)
        logs_dir = os.path.join(d, "logs")
        xcom_dir = os.path.join(d, "root", "airflow", "xcom")
        os.makedirs(logs_dir, exist_ok=True)
        os.makedirs(xcom_dir, exist_ok=True)
        for p in (d, logs_dir, os.path.join(d, "root"), os.path.join(d, "root", "airflow")):
            os.chmod(p, 0o755)
        os.chmod(xcom_dir, 0o777)
        with open(uid_file, "w") as f:
            f.write(uid)
        for i, c in enumerate(containers):
            path = os.path.join(logs_dir, f"{c}.log")
            if not os.path.exists(path):
                content = cri_lines(ann[ANN_LOGS]) if (i == 0 and ANN_LOGS in ann) else ""
                with open(path, "w") as f:
                    f.write(content)
        ret = os.path.join(xcom_dir, "return.json")
        if ANN_XCOM in ann and not os.path.exists(ret):
            with open(ret, "w") as f:
                f.write(ann[ANN_XCOM])
            os.chmod(ret, 0o644)
        self.apply_kwok_objects(ns, name, uid, containers, d)

    def apply_kwok_objects(self, ns: str, name: str, uid: str, containers: list[str], d: str) -> None:
        owner = [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}]
        labels = {"app.kubernetes.io/managed-by": FIELD_MANAGER}
        logs = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner},
            "spec": {
                "logs": [
                    {"containers": [c], "logsFile": os.path.join(d, "logs", f"{c}.log"), "follow": True}
                    for c in containers
                ]
            },
        }
        local: dict = {"workDir": os.path.join(d, "root")}
        if self.run_as_nobody:
            local["securityContext"] = {"runAsUser": 65534, "runAsGroup": 65534}
        execs = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Exec",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner},
            "spec": {
                "execs": [
                    {
                        "containers": [c],
                        "local": {
                            **local,
                            "envs": [
                                {"name": "PATH", "value": self.shim_dir},
                                {"name": "HOME", "value": "/"},
                                {"name": "HOSTNAME", "value": name},
                                {"name": "KPO_POD", "value": f"{ns}/{name}"},
                                {"name": "KPO_CONTAINER", "value": c},
                            ],
                        },
                    }
                    for c in containers
                ]
            },
        }
        for plural, obj in (("logs", logs), ("execs", execs)):
            path = f"{KWOK_API}/namespaces/{ns}/{plural}/{name}?fieldManager={FIELD_MANAGER}&force=true"
            code, body = self.api.request(
                "PATCH", path, json.dumps(obj).encode(), "application/apply-patch+yaml"
            )
            if code >= 300:
                log(f"{ns}/{name}: apply {plural} failed: {code} {body}")

    def cleanup(self, ns: str, name: str, uid: str) -> None:
        d = self.pod_dir(ns, name)
        uid_file = os.path.join(d, ".uid")
        try:
            with open(uid_file) as f:
                same = f.read().strip() == uid
        except OSError:
            same = False
        if same:
            shutil.rmtree(d, ignore_errors=True)
        for plural in ("logs", "execs"):
            code, body = self.api.request("GET", f"{KWOK_API}/namespaces/{ns}/{plural}/{name}")
            if code == 200:
                owners = body.get("metadata", {}).get("ownerReferences") or []
                if any(o.get("uid") == uid for o in owners):
                    self.api.request("DELETE", f"{KWOK_API}/namespaces/{ns}/{plural}/{name}")

    # --- events ----------------------------------------------------------------------------------
    def handle(self, etype: str, pod: dict) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        ann = meta.get("annotations") or {}
        phase = (pod.get("status") or {}).get("phase", "")
        with self.lock:
            known = self.pods.get(key)
        if etype == "DELETED":
            with self.lock:
                self.pods.pop(key, None)
            emu = self.emulations.pop(key, None)
            if emu is not None:
                emu.cancel()
            self.cleanup(meta["namespace"], meta["name"], meta["uid"])
            return
        if known is None or known["uid"] != meta["uid"]:
            old_emu = self.emulations.pop(key, None)
            if old_emu is not None:
                old_emu.cancel()
            try:
                self.setup(pod)
                if self.should_emulate(pod):
                    log_path = os.path.join(
                        self.pod_dir(meta["namespace"], meta["name"]),
                        "logs",
                        f"{pod['spec']['containers'][0]['name']}.log",
                    )
                    self.emulations[key] = Emulation(key, log_path)
                    self.emulate_queue.put((key, pod))
            except Exception as e:  # keep serving other pods
                log(f"{key}: setup failed: {e!r}")
            known = {"uid": meta["uid"]}
        if meta.get("deletionTimestamp") and (killed := self.emulations.pop(key, None)) is not None:
            # Stopped by its deletion (the object may stay, held by a finalizer): the rest of its
            # output never comes, and a base container that had not started never starts.
            killed.cancel()
        self.note_base_started(key, pod)
        self.mark_terminated(meta["namespace"], meta["name"], pod)
        known["phase"] = phase
        known["stopped"] = ann.get(ANN_STOPPED) == "true"
        known["ns"], known["name"] = meta["namespace"], meta["name"]
        with self.lock:
            self.pods[key] = known

    def mark_terminated(self, ns: str, name: str, pod: dict) -> None:
        """Mirror container states for the patched kwok log reader (tools/kwok-bin/patches):
        logs/<c>.log.waiting holds the waiting reason while a container waits to start (log reads then
        fail like on a kubelet), logs/<c>.log.terminated ends followed log streams."""
        logs_dir = os.path.join(self.pod_dir(ns, name), "logs")
        if not os.path.isdir(logs_dir):
            return
        base_name = pod["spec"]["containers"][0]["name"]
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            state = st.get("state") or {}
            base = os.path.join(logs_dir, f"{st['name']}.log")
            waiting = state.get("waiting")
            if waiting:
                with open(base + ".waiting", "w") as f:
                    f.write(waiting.get("reason") or "")
            elif os.path.exists(base + ".waiting"):
                os.unlink(base + ".waiting")
            if state.get("terminated") and not os.path.exists(base + ".terminated"):
                emu = self.emulations.get(f"{ns}/{name}")
                if emu is not None and st["name"] == base_name:
                    emu.flush()  # every emulated line is in the file before followed streams end
                with open(base + ".terminated", "w"):
                    pass

    # --- shell emulation ---------------------------------------------------------------------
    def should_emulate(self, pod: dict) -> bool:
        meta = pod["metadata"]
        ann = meta.get("annotations") or {}
        if self.emulator is None or meta.get("deletionTimestamp"):
            return False
        if ann.get(ANN_EMULATE) == "false" or ANN_EMULATED in ann:
            return False
        if any(a in ann for a in BEHAVIOUR_ANNOTATIONS):
            return False
        base = pod["spec"]["containers"][0]["name"]
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            state = st.get("state") or {}
            if st.get("name") == base and (state.get("running") or state.get("terminated")):
                return False  # already started (this helper restarted): too late to choose its behaviour
        path = os.path.join(self.pod_dir(meta["namespace"], meta["name"]), "logs", f"{base}.log")
        try:
            return os.path.getsize(path) == 0  # a test that wrote the log itself chose the output
        except OSError:
            return False

    def note_base_started(self, key: str, pod: dict) -> None:
        emu = self.emulations.get(key)
        if emu is None:
            return
        base = pod["spec"]["containers"][0]["name"]
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            if st.get("name") != base:
                continue
            state = st.get("state") or {}
            started = (state.get("running") or state.get("terminated") or {}).get("startedAt")
            if started:
                emu.set_started(_parse_time(started))

    def resolve_refs(self, pod: dict) -> dict:
        """ConfigMaps and Secrets the base container's env refers to: {"configmap/NAME": {k: v}}."""
        ns = pod["metadata"]["namespace"]
        spec = pod["spec"]["containers"][0]
        wanted = set()
        for src in spec.get("envFrom") or []:
            ref = src.get("configMapRef") or src.get("secretRef")
            if ref:
                wanted.add(("configmap" if "configMapRef" in src else "secret", ref.get("name", "")))
        for item in spec.get("env") or []:
            vf = item.get("valueFrom") or {}
            ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef")
            if ref:
                wanted.add(("configmap" if "configMapKeyRef" in vf else "secret", ref.get("name", "")))
        refs = {}
        for kind, name in sorted(wanted):
            plural = "configmaps" if kind == "configmap" else "secrets"
            code, body = self.api.request(
                "GET", f"/api/v1/namespaces/{ns}/{plural}/{urllib.parse.quote(name)}"
            )
            if code != 200:
                continue
            data = dict(body.get("data") or {})
            if kind == "secret":
                data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()}
            refs[f"{kind}/{name}"] = data
        return refs

    def emulate_forever(self) -> None:
        while True:
            key, pod = self.emulate_queue.get()
            try:
                self.emulate(key, pod)
            except Exception as e:
                log(f"{key}: emulation failed: {e!r}")

    def emulate(self, key: str, pod: dict) -> None:
        emu = self.emulations.get(key)
        if emu is None or emu.cancelled or self.emulator is None:
            return
        meta = pod["metadata"]
        ns, name = meta["namespace"], meta["name"]
        t0 = time.time()
        result = self.emulator.request({"pod": pod, "refs": self.resolve_refs(pod), "repo": REPO})
        record = {"pod": key, "uid": meta["uid"], "seen_at": t0, "result": result}
        d = self.pod_dir(ns, name)
        if "error" in result or "skip" in result:
            self.emulations.pop(key, None)
            log(f"{key}: not emulated: {result.get('error') or result.get('skip')}")
            self._write_record(d, record)
            return
        # 1. annotations first: they race the kwok Stages (see "Ordering" in the module docstring)
        duration = "24h" if result["forever"] else f"{max(result['duration'], 0.05):.3f}s"
        annotations = {ANN_EMULATED: "true", ANN_DURATION: duration, ANN_EXIT_CODE: str(result["exit_code"])}
        if result.get("message"):
            annotations[ANN_MESSAGE] = result["message"]
        code, body = self.api.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{name}",
            {"metadata": {"uid": meta["uid"], "annotations": annotations}},
            "application/merge-patch+json",
        )
        patched_at = time.time()
        record.update(annotations=annotations, patched_at=patched_at, patch_status=code)
        if code >= 300:
            log(f"{key}: emulation: annotating failed: {code} {body}")
            self._write_record(d, record)
            return
        record["margin_seconds"], late = self._margin(body, patched_at)
        # 2. files the container wrote into its volumes (shared with the sidecar): no overwrite
        root = os.path.join(d, "root")
        for path in result["dirs"]:
            host = self._host_path(root, path)
            if host:
                os.makedirs(host, exist_ok=True)
                os.chmod(host, 0o777 if path.startswith("/airflow/xcom") else 0o755)
        for path, data in result["files"]:
            host = self._host_path(root, path)
            if host and not os.path.exists(host):
                os.makedirs(os.path.dirname(host), exist_ok=True)
                with open(host, "wb") as f:
                    f.write(base64.b64decode(data))
                os.chmod(host, 0o644)
        # 3. the log lines, written on time once the container started
        emu.set_lines(result["lines"])
        self._write_record(d, record)
        summary = (
            f"exit code {result['exit_code']}, {duration}, {len(result['lines'])} log line(s), "
            f"{len(result['files'])} file(s); annotated {1000 * (patched_at - t0):.0f} ms after it was seen"
        )
        if late:
            log(f"{key}: EMULATION LATE: {late} ({summary})")
        else:
            log(f"{key}: emulated `{' '.join(result['argv'])[:120]}`: {summary}")

    @staticmethod
    def _margin(pod: dict, patched_at: float) -> tuple[float | None, str]:
        """Seconds left before kwok's default base-terminated deadline when the patch landed."""
        base = pod["spec"]["containers"][0]["name"]
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            if st.get("name") != base:
                continue
            state = st.get("state") or {}
            if state.get("terminated"):
                return None, "the base container had already terminated with kwok's defaults"
            if state.get("running"):
                margin = _parse_time(state["running"]["startedAt"]) + 2.0 - patched_at
                return margin, "" if margin > 0.1 else f"only {margin:.2f}s before kwok's default deadline"
        return None, ""  # still Pending: at least the remaining `pending` time + 1 s

    @staticmethod
    def _host_path(root: str, path: str) -> str | None:
        norm = os.path.normpath("/" + path)
        if ".." in norm.split("/"):
            return None
        return root + norm

    @staticmethod
    def _write_record(d: str, record: dict) -> None:
        try:
            with open(os.path.join(d, "emulation.json"), "w") as f:
                json.dump(record, f, indent=1)
        except OSError:
            pass

    def poll_done_markers(self) -> None:
        with self.lock:
            candidates = [
                dict(v) for v in self.pods.values() if v.get("phase") == "Running" and not v["stopped"]
            ]
        for p in candidates:
            marker = os.path.join(self.pod_dir(p["ns"], p["name"]), "root", *DONE_MARKER)
            if not os.path.exists(marker):
                continue
            patch = {"metadata": {"annotations": {ANN_STOPPED: "true"}}}
            code, body = self.api.request(
                "PATCH",
                f"/api/v1/namespaces/{p['ns']}/pods/{p['name']}",
                patch,
                "application/merge-patch+json",
            )
            if code < 300:
                log(f"{p['ns']}/{p['name']}: sidecar stop marker seen, annotated {ANN_STOPPED}=true")
                with self.lock:
                    cur = self.pods.get(f"{p['ns']}/{p['name']}")
                    if cur and cur["uid"] == p["uid"]:
                        cur["stopped"] = True
            else:
                log(f"{p['ns']}/{p['name']}: annotate failed: {code} {body}")

    # --- loops -----------------------------------------------------------------------------------
    def watch_forever(self, ready_file: str) -> None:
        announced = False
        while True:
            code, body = self.api.request("GET", "/api/v1/pods")
            if code != 200:
                log(f"list pods failed: {code} {body}; retrying")
                time.sleep(1)
                continue
            seen = set()
            for pod in body.get("items", []):
                self.handle("ADDED", pod)
                seen.add(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}")
            with self.lock:
                gone = [k for k in self.pods if k not in seen]
            for k in gone:
                with self.lock:
                    v = self.pods.pop(k)
                self.cleanup(v["ns"], v["name"], v["uid"])
            rv = body["metadata"]["resourceVersion"]
            if not announced:
                with open(ready_file, "w") as f:
                    f.write(str(os.getpid()))
                announced = True
                log("ready")
            try:
                rv = self.watch(rv)
            except Exception as e:
                log(f"watch ended: {e!r}; relisting")
                time.sleep(0.2)

    def watch(self, rv: str) -> str:
        while True:
            path = f"/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=240&resourceVersion={rv}"
            with self.api.stream(path, timeout=300) as resp:
                for line in resp:
                    ev = json.loads(line)
                    etype, obj = ev["type"], ev["object"]
                    if etype == "ERROR":
                        raise RuntimeError(f"watch error: {obj}")
                    rv = obj["metadata"]["resourceVersion"]
                    if etype == "BOOKMARK":
                        continue
                    self.handle(etype, obj)

    def poll_forever(self) -> None:
        while True:
            try:
                self.poll_done_markers()
            except Exception as e:
                log(f"poll failed: {e!r}")
            time.sleep(self.poll)


# --- shell emulation: the emulator worker (a child process) -------------------------------------
#
# The worker imports the embedded simulator's shell interpreter (kpo_async/testing/sim/shell, runtime,
# fs, containers) without running kpo_async/testing/sim/__init__.py, which would pull in its HTTP server
# (aiohttp, PyYAML): this helper must stay standard-library only. It runs each request on a fresh event
# loop whose clock is virtual: when nothing is ready, the loop jumps to the next timer instead of
# sleeping. A wall-clock alarm bounds scripts that never yield (`while true; do :; done`); the parent
# also kills a worker that does not answer in time.

EMU_VIRTUAL_CAP = 24 * 3600.0  # a script still running after this (virtual) time runs "for ever"
EMU_WALL_SECONDS = 1.5  # CPU/wall budget of one emulation in the worker
EMU_MAX_LINES = 20000
EMU_MAX_FILE_BYTES = 1 << 20
CRI_MAX_LINE = 16 * 1024


class _Hang(Exception):
    """The emulated process waits for ever (nothing scheduled) or exceeded the wall budget."""


class _VirtualSelector(selectors.BaseSelector):
    def __init__(self) -> None:
        self.real = selectors.DefaultSelector()
        self.now = 0.0

    def register(self, fileobj, events, data=None):
        return self.real.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self.real.unregister(fileobj)

    def select(self, timeout=None):
        ready = self.real.select(0)
        if ready:
            return ready
        if timeout is None:
            raise _Hang("waits for ever")
        if timeout > 0:
            self.now += timeout
        return []

    def get_map(self):
        return self.real.get_map()

    def close(self) -> None:
        self.real.close()


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._vsel = _VirtualSelector()
        super().__init__(self._vsel)

    def time(self) -> float:
        return self._vsel.now


def _import_sim(repo: str):
    if repo not in sys.path:
        sys.path.insert(0, repo)
    packages = (
        ("kpo_async", "kpo_async"),
        ("kpo_async.testing", os.path.join("kpo_async", "testing")),
        ("kpo_async.testing.sim", os.path.join("kpo_async", "testing", "sim")),
    )
    for name, sub in packages:
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = [os.path.join(repo, sub)]
            sys.modules[name] = mod
    from kpo_async.testing.sim import containers, fs, runtime, shell

    return containers, fs, runtime, shell


class _Capture:
    """stdout/stderr of the emulated process as CRI lines: (virtual time, stream, tag, text)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lines: list[list] = []
        self.dropped = 0
        self.partial = {1: bytearray(), 2: bytearray()}

    def write(self, fd: int, data: bytes) -> None:
        buf = self.partial[2 if fd == 2 else 1]
        buf += data
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            self._add(fd, bytes(buf[:i]), "F")
            del buf[: i + 1]
        while len(buf) >= CRI_MAX_LINE:
            self._add(fd, bytes(buf[:CRI_MAX_LINE]), "P")
            del buf[:CRI_MAX_LINE]

    def close(self) -> None:
        for fd, buf in self.partial.items():
            if buf:
                self._add(fd, bytes(buf), "F")
                buf.clear()

    def _add(self, fd: int, data: bytes, tag: str) -> None:
        if len(self.lines) >= EMU_MAX_LINES:
            self.dropped += 1
            return
        stream = "stderr" if fd == 2 else "stdout"
        self.lines.append([round(self.loop.time(), 6), stream, tag, data.decode("utf-8", "replace")])


def _container_env(containers, pod: dict, spec: dict, refs: dict) -> dict[str, str]:
    """The base container's environment, as the kubelet would set it (refs: resolved ConfigMaps/Secrets)."""
    meta = pod["metadata"]
    env = dict(containers.BASE_ENV)
    env["HOSTNAME"] = pod["spec"].get("hostname") or meta["name"]
    for src in spec.get("envFrom") or []:
        kind = "configmap" if "configMapRef" in src else "secret"
        ref = src.get("configMapRef") or src.get("secretRef") or {}
        for k, v in (refs.get(f"{kind}/{ref.get('name', '')}") or {}).items():
            env[(src.get("prefix") or "") + k] = v
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    for item in spec.get("env") or []:
        name = item["name"]
        vf = item.get("valueFrom")
        if vf is None:
            env[name] = containers.expand_k8s_vars(str(item.get("value", "")), env)
        elif "fieldRef" in vf:
            path = vf["fieldRef"].get("fieldPath", "")
            if path in simple:
                env[name] = simple[path]
            elif path.startswith(("metadata.labels['", "metadata.annotations['")) and path.endswith("']"):
                which, key = path[len("metadata.") :].split("['", 1)
                env[name] = str((meta.get(which) or {}).get(key[:-2], ""))
            else:
                env[name] = ""
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind = "configmap" if "configMapKeyRef" in vf else "secret"
            ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef") or {}
            value = (refs.get(f"{kind}/{ref.get('name', '')}") or {}).get(ref.get("key", ""))
            if value is not None:
                env[name] = value
        else:
            env[name] = ""
    return env


def emulate_pod(request: dict) -> dict:
    """Run the pod's base container through the simulator's shell with a virtual clock."""
    containers, fs_mod, runtime, shell = _import_sim(request.get("repo") or REPO)
    pod = request["pod"]
    spec = pod["spec"]["containers"][0]
    env = _container_env(containers, pod, spec, request.get("refs") or {})
    argv = containers.container_argv(spec, env)
    if not argv:
        return {"skip": "the base container has no command (its image's entrypoint is unknown)"}
    if not shell.is_runnable(argv):
        return {"skip": f"{argv[0]!r} is not something the simulator's shell can run"}
    name = pod["metadata"]["name"]
    pod_fs = fs_mod.PodFS([v["name"] for v in pod["spec"].get("volumes") or []])
    cfs = pod_fs.container_fs(spec.get("volumeMounts") or [], name)
    loop = _VirtualLoop()
    capture = _Capture(loop)

    class Runtime(runtime.ContainerRuntime):
        def main_sink(self, fd):
            return shell.CallbackSink(lambda data: capture.write(fd, data))

    rt = Runtime(name, cfs, env, argv, None, 0.0, 1 << 20)
    forever, why = False, ""
    code = 0

    async def main() -> int:
        rt.start()
        return await asyncio.wait_for(asyncio.shield(rt.done), EMU_VIRTUAL_CAP)

    def alarm(signum, frame):
        raise _Hang(f"still busy after {EMU_WALL_SECONDS}s of real time")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, EMU_WALL_SECONDS)
    try:
        code = loop.run_until_complete(main())
    except (_Hang, asyncio.TimeoutError) as e:
        forever, why = True, str(e) or "runs longer than the emulation cap"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    end = loop.time()
    try:  # let cancelled tasks unwind (a loop interrupted by the alarm may refuse: then just drop it)
        rt.cancel()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    except BaseException:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        try:
            loop.close()
        except Exception:
            pass
    capture.close()
    result: dict = {
        "argv": argv,
        "forever": forever,
        "why": why,
        "exit_code": code,
        "duration": end,
        "lines": capture.lines,
        "dropped_lines": capture.dropped,
        "files": [],
        "dirs": [],
    }
    if not forever:
        policy = spec.get("terminationMessagePolicy", "File")
        path = spec.get("terminationMessagePath", "/dev/termination-log")
        try:
            msg = cfs.read(path).decode(errors="replace")
        except Exception:
            msg = ""
        if not msg and policy == "FallbackToLogsOnError" and code != 0:
            msg = "\n".join(line[3] for line in capture.lines[-80:])[-2048:]
        result["message"] = msg[:4096]
    # Files in the base container's volumes (emptyDirs shared with the other containers).
    for mpath, vol, sub, _ro in cfs.mounts:

        def inner(rel: str, sub: str = sub) -> str | None:
            if not sub:
                return rel
            if rel == sub:
                return ""
            return rel[len(sub) + 1 :] if rel.startswith(sub + "/") else None

        for rel in sorted(vol.dirs):
            i = inner(rel)
            if i:
                result["dirs"].append(mpath.rstrip("/") + "/" + i)
        for rel, data in sorted(vol.files.items()):
            i = inner(rel)
            if i and len(data) <= EMU_MAX_FILE_BYTES:
                result["files"].append([mpath.rstrip("/") + "/" + i, base64.b64encode(bytes(data)).decode()])
    return result


def emulator_worker() -> int:
    """`podfiles.py --emulator-worker`: one JSON request per stdin line, one JSON answer per line."""
    import logging
    import warnings

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # tasks of abandoned (hung) emulations
    warnings.simplefilter("ignore")
    try:
        _import_sim(REPO)
    except Exception as e:  # reported on every request
        broken = f"cannot import kpo-async's simulator shell from {REPO}: {e!r}"
    else:
        broken = ""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = {"error": broken} if broken else emulate_pod(json.loads(line))
        except Exception as e:
            answer = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


class Emulator:
    """The parent's handle on the worker process: restarted when it dies or does not answer."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [self.python, os.path.abspath(__file__), "--emulator-worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
                env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8"},
            )
        return self.proc

    def request(self, req: dict, timeout: float = EMU_WALL_SECONDS + 3) -> dict:
        proc = self._start()
        try:
            proc.stdin.write(json.dumps(req) + "\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline() if ready else ""
        except OSError as e:
            line, ready = "", [f"{e!r}"]
        if not line:
            self.stop()
            return {
                "error": "the emulator worker did not answer" if not ready else "the emulator worker died"
            }
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _cri_time(ts: float) -> str:
    t = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    return f"{t.strftime('%Y-%m-%dT%H:%M:%S')}.{t.microsecond * 1000:09d}Z"


def _parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Emulation:
    """The emulated output of one pod's base container, written to its log file on time."""

    def __init__(self, key: str, log_path: str) -> None:
        self.key = key
        self.log_path = log_path
        self.lines: list | None = None
        self.started_at: float | None = None
        self.next = 0
        self.last_ts = 0.0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.cancelled = False
        self.thread: threading.Thread | None = None

    def set_lines(self, lines: list) -> None:
        with self.lock:
            self.lines = lines
        self._maybe_start()

    def set_started(self, started_at: float) -> None:
        with self.lock:
            if self.started_at is not None:
                return
            self.started_at = started_at
        self._maybe_start()

    def _maybe_start(self) -> None:
        with self.lock:
            if self.thread or self.lines is None or self.started_at is None or self.cancelled:
                return
            self.thread = threading.Thread(target=self._run, daemon=True, name=f"log {self.key}")
        self.thread.start()

    def _write(self, upto: int) -> None:
        """Append lines [next, upto) (caller holds the lock)."""
        assert self.lines is not None
        out = []
        for _offset, stream, tag, text in self.lines[self.next : upto]:
            ts = max(time.time(), self.last_ts + 1e-6)
            self.last_ts = ts
            out.append(f"{_cri_time(ts)} {stream} {tag} {text}\n")
        self.next = upto
        if out:
            try:
                with open(self.log_path, "a") as f:
                    f.write("".join(out))
            except OSError:
                pass

    def _run(self) -> None:
        assert self.lines is not None and self.started_at is not None
        while not self.cancelled:
            with self.lock:
                if self.next >= len(self.lines):
                    return
                due = self.started_at + self.lines[self.next][0]
                if due <= time.time():
                    upto = self.next
                    while upto < len(self.lines) and self.started_at + self.lines[upto][0] <= time.time():
                        upto += 1
                    self._write(upto)
                    continue
            self.wake.wait(min(1.0, max(0.0, due - time.time())))

    def flush(self) -> None:
        """Write every remaining line now (the container has terminated)."""
        with self.lock:
            if self.lines is not None and not self.cancelled:
                self._write(len(self.lines))

    def cancel(self) -> None:
        self.cancelled = True
        self.wake.set()


def main() -> int:
    if sys.argv[1:] == ["--emulator-worker"]:
        return emulator_worker()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--pods-dir", required=True)
    ap.add_argument("--shim-dir", required=True)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--run-as-nobody", action="store_true")
    ap.add_argument("--poll-seconds", type=float, default=0.1)
    ap.add_argument(
        "--no-emulation", action="store_true", help="never emulate base containers (kwok's defaults only)"
    )
    args = ap.parse_args()
    os.makedirs(args.pods_dir, exist_ok=True)
    emulator = None
    if not args.no_emulation and os.environ.get("KPO_ASYNC_KWOK_EMULATION", "1") != "0":
        emulator = Emulator(sys.executable)
        answer = emulator.request(
            {
                "pod": {
                    "metadata": {"name": "warm-up"},
                    "spec": {"containers": [{"name": "b", "command": ["true"]}]},
                }
            }
        )
        if "error" in answer:
            log(f"shell emulation disabled: {answer['error']}")
            emulator.stop()
            emulator = None
        else:
            log("shell emulation enabled (kpo_async/testing/sim/shell in an emulator worker)")
    pf = PodFiles(
        Api(args.server, args.ca, args.cert, args.key),
        args.pods_dir,
        args.shim_dir,
        args.run_as_nobody,
        args.poll_seconds,
        emulator,
    )
    threading.Thread(target=pf.poll_forever, daemon=True, name="poll").start()
    threading.Thread(target=pf.emulate_forever, daemon=True, name="emulate").start()
    pf.watch_forever(args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
