"""Cluster resources a pod uses: secrets (env, all keys, volume), ConfigMaps, a PVC, an init
container, affinity, tolerations, ports, image pull secrets, a priority class, a service account.

Runs unchanged with the official operator and, import switched, with kpo-async (tests/compat).
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from airflow.sdk import DAG
from kubernetes.client import models as k8s

NS = "compat"
SCRIPT = (
    'echo "env DB_URL=$DB_URL"; echo "env ALL=$ALPHA $BETA"; echo "env CM=$CM_ONE $CM_TWO"; '
    'echo "env INIT_SEEN=${INIT_KEY:-unset}"; echo "file $(cat /etc/db/url)"; '
    'echo "file $(cat /etc/settings/app.ini)"; ls /mnt/claim >/dev/null && echo "claim mounted"'
)

with DAG(dag_id="compat_cluster_resources", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    KubernetesPodOperator(
        task_id="resources",
        name="resources",
        namespace=NS,
        image="alpine:3.20",
        cmds=["sh", "-c"],
        arguments=[SCRIPT],
        labels={"team": "compat"},
        annotations={"compat/annotated": "yes"},
        secrets=[
            Secret("env", "DB_URL", "compat-db", "url"),
            Secret("env", None, "compat-all"),
            Secret("volume", "/etc/db", "compat-db", "url"),
        ],
        env_from=[
            k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="compat-cm-1")),
            k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="compat-cm-2")),
        ],
        volumes=[
            k8s.V1Volume(
                name="claim",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="compat-claim"),
            ),
            k8s.V1Volume(name="settings", config_map=k8s.V1ConfigMapVolumeSource(name="compat-files")),
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="claim", mount_path="/mnt/claim"),
            k8s.V1VolumeMount(name="settings", mount_path="/etc/settings", read_only=True),
        ],
        ports=[k8s.V1ContainerPort(name="http", container_port=8080)],
        init_containers=[
            k8s.V1Container(
                name="prepare",
                image="alpine:3.20",
                command=["sh", "-c"],
                args=['echo "init says $INIT_KEY"; echo prepared > /mnt/claim/ready'],
                env=[k8s.V1EnvVar(name="INIT_KEY", value="init-value")],
                volume_mounts=[k8s.V1VolumeMount(name="claim", mount_path="/mnt/claim")],
            )
        ],
        affinity=k8s.V1Affinity(
            node_affinity=k8s.V1NodeAffinity(
                preferred_during_scheduling_ignored_during_execution=[
                    k8s.V1PreferredSchedulingTerm(
                        weight=1,
                        preference=k8s.V1NodeSelectorTerm(
                            match_expressions=[
                                k8s.V1NodeSelectorRequirement(key="disktype", operator="In", values=["ssd"])
                            ]
                        ),
                    )
                ]
            ),
            pod_anti_affinity=k8s.V1PodAntiAffinity(
                required_during_scheduling_ignored_during_execution=[
                    k8s.V1PodAffinityTerm(
                        label_selector=k8s.V1LabelSelector(match_labels={"compat-exclusive": "yes"}),
                        topology_key="kubernetes.io/hostname",
                    )
                ]
            ),
        ),
        tolerations=[
            k8s.V1Toleration(key="dedicated", operator="Equal", value="compat", effect="NoSchedule")
        ],
        image_pull_secrets=[k8s.V1LocalObjectReference(name="compat-pull")],
        priority_class_name="compat-medium",
        service_account_name="compat-sa",
        hostnetwork=False,
        on_finish_action="delete_pod",
        get_logs=True,
    )

    # A required pod-affinity list holding a *weighted* term (no topologyKey at the top level):
    # kube-apiserver refuses the pod, so both operators fail the task.
    KubernetesPodOperator(
        task_id="invalid_affinity",
        name="invalid-affinity",
        namespace=NS,
        image="alpine:3.20",
        cmds=["sh", "-c", "echo never"],
        affinity=k8s.V1Affinity(
            pod_affinity=k8s.V1PodAffinity(
                required_during_scheduling_ignored_during_execution=[
                    k8s.V1WeightedPodAffinityTerm(
                        weight=1,
                        pod_affinity_term=k8s.V1PodAffinityTerm(
                            label_selector=k8s.V1LabelSelector(match_labels={"security": "S1"}),
                            topology_key="topology.kubernetes.io/zone",
                        ),
                    )
                ]
            )
        ),
        get_logs=True,
    )
