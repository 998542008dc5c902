"""The embedded Kubernetes cluster: an in-process kube-apiserver, scheduler and kubelet simulator.

See docs/embedded-cluster.md. Public API::

    from kpo_async.testing.sim import SimCluster, SimConfig, Fault

    async with SimCluster(SimConfig()) as cluster:
        ...  # cluster.kubeconfig_path, cluster.base_url, cluster.token, cluster.ca_path
"""

from __future__ import annotations

from kpo_async.testing.sim.config import SimConfig
from kpo_async.testing.sim.faults import Fault
from kpo_async.testing.sim.server import SimCluster

BEHAVIOR_ANNOTATION = "sim.kpo-async.io/behavior"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m kpo_async.testing.sim` (also callable from a CLI)."""
    from kpo_async.testing.sim.__main__ import main as _main

    return _main(argv)


__all__ = ["BEHAVIOR_ANNOTATION", "Fault", "SimCluster", "SimConfig", "main"]
