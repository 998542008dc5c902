"""One container as the kubelet sees it: its reported status, image naming, env and argv."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

from kpo_async.testing.sim.logs import ContainerLog
from kpo_async.testing.sim.runtime import ContainerRuntime
from kpo_async.testing.sim.util import fmt_time

FAILING_REGISTRY = "registry.invalid"
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "KUBERNETES_SERVICE_PORT_HTTPS": "443",
    "KUBERNETES_PORT": "tcp://10.96.0.1:443",
}


def normalize_image(image: str) -> str:
    """docker.io/library/alpine:3.20 for alpine:3.20, as the container runtime reports it."""
    name = image
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = ("docker.io/library/" if "/" not in name else "docker.io/") + name
    return name


def image_id(image: str) -> str:
    full = normalize_image(image)
    repo = full.split("@", 1)[0].rsplit(":", 1)[0] if "@" not in full else full.split("@", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(full.encode()).hexdigest()}"


_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[a-z0-9]+:[a-f0-9]{32,})?$"
)


def image_reference_problem(image: str) -> str | None:
    """Why the kubelet cannot parse `image` as a reference (its InvalidImageName message), or None."""
    if _REFERENCE.match(image):
        return None
    path = image.split("@", 1)[0]
    lowercase = path.rsplit(":", 1)[0] if ":" in path.rsplit("/", 1)[-1] else path
    why = "invalid reference format"
    if lowercase != lowercase.lower():
        why += ": repository name must be lowercase"
    return f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": {why}'


def registry_host(image: str) -> str:
    first = image.split("/", 1)[0]
    return first if "/" in image and ("." in first or ":" in first) else "docker.io"


class ContainerState:
    def __init__(self, spec: dict[str, Any], init: bool, waiting_reason: str) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.init = init
        self.state = "waiting"
        self.reason: str | None = waiting_reason
        self.message: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.term_reason: str | None = None
        self.term_message: str | None = None
        self.restart_count = 0
        self.last_state: dict[str, Any] = {}
        self.container_id: str | None = None
        self.image_id = ""
        self.runtime: ContainerRuntime | None = None
        self.prev_log: ContainerLog | None = None
        #: resolved once the container started or its first start attempt failed (start order)
        self.first_attempt: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def attempted(self) -> None:
        if not self.first_attempt.done():
            self.first_attempt.set_result(None)

    def waiting(self, reason: str, message: str | None = None) -> None:
        self.state, self.reason, self.message = "waiting", reason, message

    def terminated_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"exitCode": self.exit_code, "reason": self.term_reason}
        if self.signal:
            d["signal"] = self.signal
        if self.term_message:
            d["message"] = self.term_message
        d["startedAt"] = fmt_time(self.started_at) if self.started_at else None
        d["finishedAt"] = fmt_time(self.finished_at) if self.finished_at else None
        if self.container_id:
            d["containerID"] = self.container_id
        return d

    @property
    def ready(self) -> bool:
        return self.state == "running"

    def render(self) -> dict[str, Any]:
        if self.state == "waiting":
            w: dict[str, Any] = {"reason": self.reason} if self.reason else {}
            if self.message:
                w["message"] = self.message
            state: dict[str, Any] = {"waiting": w}
        elif self.state == "running":
            state = {"running": {"startedAt": fmt_time(self.started_at)}}
        else:
            state = {"terminated": self.terminated_dict()}
        image = self.spec.get("image", "")
        d: dict[str, Any] = {
            "name": self.name,
            "state": state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": normalize_image(image) if self.image_id else image,
            "imageID": self.image_id,
        }
        if self.container_id:
            d["containerID"] = self.container_id
        d["started"] = self.state == "running"
        return d


def expand_k8s_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in env values, command and args ($$ escapes)."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", lambda m: "$" if m.group(0) == "$$" else repl(m), text
    )


def container_argv(spec: dict[str, Any], env: dict[str, str]) -> list[str]:
    """command + args with the kubelet's $(VAR) expansion (no image entrypoint is known)."""
    argv = list(spec.get("command") or []) + list(spec.get("args") or [])
    return [expand_k8s_vars(a, env) for a in argv]
