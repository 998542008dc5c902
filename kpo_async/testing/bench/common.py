"""Small helpers shared by the benchmark's parent and its mini-triggerer child."""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Iterable, Mapping
from typing import Any

#: Requests whose key contains this are log reads/streams, reported apart from the rest.
LOG_RESOURCE = "pods/log"


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    data = sorted(values)
    if not data:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(data)))
    return data[min(rank, len(data)) - 1]


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM ...); 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def counter_delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return {k: v for k, v in sorted(delta.items()) if v}


def split_log_requests(requests: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(API requests without log reads, log reads/streams)."""
    api = {k: v for k, v in requests.items() if LOG_RESOURCE not in k}
    logs = {k: v for k, v in requests.items() if LOG_RESOURCE in k}
    return api, logs


def fmt_num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def our_trigger(
    pod_name: str, namespace: str, kubeconfig: str, *, get_logs: bool, xcom: bool, now: float, **settings: Any
) -> Any:
    """Our PodTrigger as `AsyncKubernetesPodOperator.execute` builds it with the operator's defaults
    (startup_timeout_seconds=120, poll_interval=2 -> a 30 s fallback poll); `settings` override."""
    from kpo_async.connection import ClusterRef
    from triggers.pod import PodTrigger

    return PodTrigger(
        pod_name=pod_name,
        namespace=namespace,
        cluster=ClusterRef(config_file=kubeconfig).to_dict(),
        base_container_name="base",
        get_logs=get_logs,
        do_xcom_push=xcom,
        startup_deadline=now + 120,
        execution_deadline=None,
        on_kill_action="delete_pod",
        **{"fallback_poll_seconds": 30.0, **settings},
    )


def official_trigger(
    pod_name: str, namespace: str, config_dict: Any, *, get_logs: bool, logging_interval: Any, start: Any
) -> Any:
    """The official KubernetesPodTrigger as `KubernetesPodOperator(deferrable=True)` builds it with
    its defaults; the kubeconfig file becomes `config_dict`, as the operator converts it."""
    from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

    return KubernetesPodTrigger(
        pod_name=pod_name,
        pod_namespace=namespace,
        trigger_start_time=start,
        base_container_name="base",
        kubernetes_conn_id="kubernetes_default",
        connection_extras={},
        cluster_context=None,
        config_dict=config_dict,
        in_cluster=None,
        poll_interval=2,
        get_logs=get_logs,
        startup_timeout=120,
        startup_check_interval=5,
        log_events_on_startup=True,
        schedule_timeout=120,
        on_finish_action="delete_pod",
        on_kill_action="delete_pod",
        termination_grace_period=None,
        last_log_time=None,
        logging_interval=logging_interval,
        trigger_kwargs=None,
    )
