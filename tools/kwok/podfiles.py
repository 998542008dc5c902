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
* removes the directory and the two objects when the pod is deleted.

Files a test writes before creating the pod are kept (nothing is overwritten).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request

PREFIX = "kwok.kpo-async.io/"
ANN_LOGS = PREFIX + "logs"
ANN_XCOM = PREFIX + "xcom"
ANN_STOPPED = PREFIX + "sidecar-stopped"
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
    def __init__(self, api: Api, pods_dir: str, shim_dir: str, run_as_nobody: bool, poll: float) -> None:
        self.api = api
        self.pods_dir = pods_dir
        self.shim_dir = shim_dir
        self.run_as_nobody = run_as_nobody
        self.poll = poll
        self.lock = threading.Lock()
        # "ns/name" -> {"uid", "containers", "phase", "stopped"}
        self.pods: dict[str, dict] = {}

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
            self.cleanup(meta["namespace"], meta["name"], meta["uid"])
            return
        if known is None or known["uid"] != meta["uid"]:
            try:
                self.setup(pod)
            except Exception as e:  # keep serving other pods
                log(f"{key}: setup failed: {e!r}")
            known = {"uid": meta["uid"]}
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
                with open(base + ".terminated", "w"):
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


def main() -> int:
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
    args = ap.parse_args()
    os.makedirs(args.pods_dir, exist_ok=True)
    pf = PodFiles(
        Api(args.server, args.ca, args.cert, args.key),
        args.pods_dir,
        args.shim_dir,
        args.run_as_nobody,
        args.poll_seconds,
    )
    threading.Thread(target=pf.poll_forever, daemon=True, name="poll").start()
    pf.watch_forever(args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
