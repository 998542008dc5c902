"""Names shared by the operator, the trigger and the embedded cluster (labels, annotations, paths)."""

from __future__ import annotations

#: Label on every pod this project creates; the shared watch selects on it.
MANAGED_LABEL = "kpo-async.io/managed"
#: Annotation the trigger writes with its log cursor so a re-created trigger resumes exactly.
LOG_CURSOR_ANNOTATION = "kpo-async.io/log-cursor"
#: Annotation holding the XCom result once read, so it survives the sidecar being stopped.
XCOM_RESULT_ANNOTATION = "kpo-async.io/xcom-result"

XCOM_SIDECAR_NAME = "airflow-xcom-sidecar"
XCOM_MOUNT_PATH = "/airflow/xcom"
XCOM_RETURN_FILE = "/airflow/xcom/return.json"
#: The sidecar exits once this file exists; the trigger creates it over exec. A file rather than
#: `kill -2 1` so that the stop command is harmless wherever exec actually runs.
XCOM_STOP_FILE = "/airflow/xcom/.kpo-async-done"
XCOM_SIDECAR_SCRIPT = f'trap "exit 0" TERM INT; until [ -e {XCOM_STOP_FILE} ]; do sleep 0.5; done'

#: Connection extras the official `kubernetes` connection type defines; we read the same ones.
CONNECTION_EXTRAS = (
    "in_cluster",
    "kube_config_path",
    "kube_config",
    "namespace",
    "cluster_context",
    "disable_verify_ssl",
    "disable_tcp_keepalive",
    "xcom_sidecar_container_image",
    "xcom_sidecar_container_resources",
)
