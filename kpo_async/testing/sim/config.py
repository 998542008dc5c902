"""Configuration of the embedded cluster (`SimConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_NODE_ALLOCATABLE: dict[str, str] = {
    "cpu": "8",
    "memory": "32Gi",
    "ephemeral-storage": "100Gi",
    "nvidia.com/gpu": "0",
    "pods": "10000",
}
DEFAULT_NODE_LABELS: dict[str, str] = {
    "kubernetes.io/hostname": "sim-node",
    "kubernetes.io/os": "linux",
    "kubernetes.io/arch": "amd64",
    "beta.kubernetes.io/os": "linux",
    "beta.kubernetes.io/arch": "amd64",
}


@dataclass
class SimConfig:
    """Everything that can be tuned on a `SimCluster`. Times are seconds of wall clock.

    Kubelet delays are divided by ``speed`` (2.0 = twice as fast); script ``sleep`` and behaviour
    durations are not scaled, so log timestamps stay truthful.
    """

    host: str = "127.0.0.1"
    port: int = 0
    tls: bool = True
    auth: bool = True
    #: Bearer token; random per start when None.
    token: str | None = None
    #: Where to write the kubeconfig; a file in a fresh temp dir when None.
    kubeconfig_path: str | None = None
    namespaces: tuple[str, ...] = ("default", "airflow")
    node_name: str = "sim-node"
    node_allocatable: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_NODE_ALLOCATABLE))
    node_labels: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_NODE_LABELS))

    # --- kubelet timings (scaled by 1/speed) ---
    speed: float = 1.0
    schedule_delay: float = 0.005
    #: Sandbox creation (pod in ContainerCreating), uniform between the two bounds.
    sandbox_delay: tuple[float, float] = (0.05, 0.2)
    pull_delay: float = 0.1
    #: Delay between "Created" and "Started" for one container.
    start_delay: float = 0.01
    #: A container with neither command nor behaviour annotation runs this long and exits 0.
    noop_container_seconds: float = 0.2
    #: ImagePullBackOff / CrashLoopBackOff: first back-off, doubled up to the cap.
    backoff_initial: float = 1.0
    backoff_max: float = 10.0
    #: After all containers of a deleted pod stopped, the object disappears after this delay.
    delete_delay: float = 0.02
    #: Status updates of one pod within this window are coalesced (the kubelet batches too).
    status_batch: float = 0.0

    # --- API server ---
    #: Number of watch events kept for resuming a watch from a resourceVersion (older -> 410).
    watch_history: int = 10000
    bookmark_interval: float = 2.0
    #: Server-side watch timeout when the client gives none (the real one is 30-60 min).
    default_watch_timeout: tuple[float, float] = (1800.0, 3600.0)
    #: A watcher that falls this many events behind is closed (the real server does the same).
    watch_queue_limit: int = 100000
    #: Cap of the in-memory log of one container run by the shell interpreter (oldest dropped).
    max_log_bytes: int = 50 * 1024 * 1024
    #: Events of deleted pods are kept this long (the real default TTL is one hour).
    event_ttl: float = 3600.0
    seed: int | None = None
    #: Permissions the simulator's user lacks, as "<verb> <resource>" (e.g. "create pods/exec").
    denied: frozenset[str] = frozenset()

    def scaled(self, seconds: float) -> float:
        return max(0.0, seconds / self.speed) if self.speed > 0 else seconds
