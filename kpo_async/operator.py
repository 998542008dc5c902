"""`AsyncKubernetesPodOperator`: submit a pod, defer to `PodTrigger`, finalize on resume.

The worker holds a slot only to build and submit the pod (`execute`) and to finalize it
(`execute_complete`); the pod's run is followed by the triggerer. The operator orchestrates:
the pod spec comes from `pod_builder` (pure), the cluster from `connection`/`clients`, the pod
calls from `pods`, the waiting from `triggers.pod.PodTrigger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import time
import warnings
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from airflow.sdk import BaseOperator

from kpo_async import callbacks as user_callbacks
from kpo_async import pods
from kpo_async.airflow_compat import AirflowSkipException, AirflowTaskTimeout, redact, triggerer_ends_tasks
from kpo_async.clients import ClusterClient, open_client
from kpo_async.connection import DEFAULT_CONN_ID, ClusterRef, resolve_cluster
from kpo_async.errors import (
    ClusterUnreachableError,
    InvalidArgumentError,
    KpoAsyncError,
    PodCannotRunError,
    PodFailedError,
    QuotaExceeded,
)
from kpo_async.finish import FinishSettings, finish_pod
from kpo_async.hook import KubernetesConnectionHook
from kpo_async.identity import (
    FOLLOWED_BY_TRY_ANNOTATION,
    QUOTA_WAIT_ANNOTATION,
    RELAUNCH_ANNOTATION,
    TaskIdentity,
    belongs_to_try,
    task_selector,
)
from kpo_async.k8s_objects import is_model, to_api_dict, to_v1pod
from kpo_async.links import POD_NAME_XCOM, POD_NAMESPACE_XCOM, PodLink
from kpo_async.log_follower import formatter_path
from kpo_async.outcome import PodOutcome, Status
from kpo_async.pod_builder import PodArguments, build_pod, check_choice, check_whole_number
from kpo_async.pod_state import PodState
from kpo_async.pod_template import pod_template_from_dict, read_pod_template
from kpo_async.settings import setting
from kpo_async.trigger_settings import ContainerSelection
from triggers.pod import PodTrigger
from triggers.quota import QuotaTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context
    from kubernetes_asyncio.client import V1Pod

T = TypeVar("T")
ON_FINISH_ACTIONS = ("delete_pod", "delete_succeeded_pod", "delete_active_pod", "keep_pod")
ON_KILL_ACTIONS = ("delete_pod", "keep_pod")
#: Extra time Airflow's own deferral timeout allows past our trigger's execution deadline, so that
#: the trigger's timeout event (which cleans the pod up) normally wins.
_DEFERRAL_GRACE = timedelta(minutes=2)
#: Official-provider arguments accepted for drop-in compatibility but without effect here.
_ACCEPTED_WITHOUT_EFFECT = (
    "startup_check_interval_seconds",
    "base_container_status_polling_interval",
    "logging_interval",
    "progress_callback",
    "trigger_kwargs",
)


#: Attributes of Kubernetes objects (either client's models, by class name) that Jinja renders:
#: the official operator's list, plus the Secret names it leaves out.
NESTED_TEMPLATE_FIELDS = {
    "V1EnvVar": ("value", "name"),
    "V1ResourceRequirements": ("limits", "requests"),
    "V1Volume": ("name", "persistent_volume_claim", "config_map", "secret"),
    "V1VolumeMount": ("name", "sub_path"),
    "V1PersistentVolumeClaimVolumeSource": ("claim_name",),
    "V1ConfigMapVolumeSource": ("name",),
    "V1SecretVolumeSource": ("secret_name",),
    "V1EnvFromSource": ("config_map_ref", "secret_ref"),
    "V1ConfigMapEnvSource": ("name",),
    "V1SecretEnvSource": ("name",),
}


class AsyncKubernetesPodOperator(BaseOperator):
    """Run a container image as a Kubernetes pod, waiting on the triggerer instead of a worker.

    Accepts the official ``KubernetesPodOperator``'s arguments with the same meanings; see
    ``docs/arguments.md`` for each one and ``docs/migration.md`` for the few differences.
    """

    # The official operator's template fields (trigger_kwargs aside, which has no effect here).
    template_fields: Sequence[str] = (
        "image",
        "name",
        "hostname",
        "cmds",
        "annotations",
        "arguments",
        "env_vars",
        "labels",
        "config_file",
        "pod_template_file",
        "pod_template_dict",
        "namespace",
        "container_resources",
        "volumes",
        "volume_mounts",
        "cluster_context",
        "env_from",
        "configmaps",
        "node_selector",
        "kubernetes_conn_id",
        "base_container_name",
    )
    template_fields_renderers = {"env_vars": "py"}
    template_ext: Sequence[str] = ()
    ui_color = "#8fc9fb"
    operator_extra_links = (PodLink(),)
    # The arguments the operator reads itself; __init__ sets them (and every other argument) from
    # the arguments of the same name.
    kubernetes_conn_id: str | None
    config_file: str | None
    cluster_context: str | None
    in_cluster: bool | None
    namespace: str | None
    full_pod_spec: Any
    pod_template_file: str | None
    pod_template_dict: dict[str, Any] | None
    get_logs: bool
    startup_timeout_seconds: int
    poll_interval: float
    deferrable: bool
    on_finish_action: str
    on_kill_action: str
    log_events_on_startup: bool
    log_events_on_failure: bool
    schedule_timeout_seconds: int | None
    container_logs: ContainerSelection
    init_container_logs: ContainerSelection
    container_name_log_prefix_enabled: bool
    log_formatter: Callable[[str, str], str] | None
    log_pod_spec_on_failure: bool
    disruption_relaunches: int
    relaunch_started_pods: bool
    end_from_trigger: bool | None

    def __init__(
        self,
        *,
        kubernetes_conn_id: str | None = DEFAULT_CONN_ID,
        namespace: str | None = None,
        image: str | None = None,
        name: str | None = None,
        random_name_suffix: bool = True,
        cmds: list[str] | None = None,
        arguments: list[str] | None = None,
        ports: list[Any] | None = None,
        volume_mounts: list[Any] | None = None,
        volumes: list[Any] | None = None,
        env_vars: list[Any] | dict[str, str] | None = None,
        env_from: list[Any] | None = None,
        in_cluster: bool | None = None,
        cluster_context: str | None = None,
        labels: dict[str, Any] | None = None,
        reattach_on_restart: bool | None = None,
        durable: bool | None = None,
        startup_timeout_seconds: int = 120,
        get_logs: bool = True,
        base_container_name: str | None = None,
        container_logs: ContainerSelection = None,
        image_pull_policy: str | None = None,
        annotations: dict[str, Any] | None = None,
        container_resources: Any = None,
        resources: Any = None,
        affinity: Any = None,
        config_file: str | None = None,
        runtime_class_name: str | None = None,
        node_selector: dict[str, Any] | None = None,
        image_pull_secrets: list[Any] | str | None = None,
        service_account_name: str | None = None,
        automount_service_account_token: bool | None = None,
        hostnetwork: bool = False,
        host_aliases: list[Any] | None = None,
        tolerations: list[Any] | None = None,
        security_context: Any = None,
        container_security_context: Any = None,
        dnspolicy: str | None = None,
        schedulername: str | None = None,
        full_pod_spec: Any = None,
        init_containers: list[Any] | None = None,
        log_events_on_failure: bool = False,
        log_events_on_startup: bool = True,
        do_xcom_push: bool = False,
        pod_template_file: str | None = None,
        pod_template_dict: dict[str, Any] | None = None,
        priority_class_name: str | None = None,
        termination_grace_period: int | None = None,
        skip_on_exit_code: int | Container[int] | None = None,
        deferrable: bool = True,
        poll_interval: float = 2,
        on_finish_action: str = "delete_pod",
        on_kill_action: str = "delete_pod",
        is_delete_operator_pod: bool | None = None,
        termination_message_policy: str = "File",
        active_deadline_seconds: int | None = None,
        secrets: list[Any] | None = None,
        configmaps: list[str] | None = None,
        pod_runtime_info_envs: list[Any] | None = None,
        hostname: str | None = None,
        subdomain: str | None = None,
        dns_config: Any = None,
        xcom_sidecar_container_security_context: Any = None,
        callbacks: Any = None,
        schedule_timeout_seconds: int | None = None,
        init_container_logs: ContainerSelection = None,
        container_name_log_prefix_enabled: bool = True,
        log_formatter: Callable[[str, str], str] | None = None,
        log_pod_spec_on_failure: bool = True,
        disruption_relaunches: int = 2,
        relaunch_started_pods: bool = False,
        end_from_trigger: bool | None = None,
        **kwargs: Any,
    ) -> None:
        ignored = {key: kwargs.pop(key) for key in _ACCEPTED_WITHOUT_EFFECT if key in kwargs}
        super().__init__(**kwargs)
        if ignored:
            self.log.debug("accepted for compatibility, without effect here: %s", ", ".join(ignored))
        if is_delete_operator_pod is not None:
            import sys

            from airflow.exceptions import AirflowProviderDeprecationWarning

            with warnings.catch_warnings():
                if not sys.warnoptions:  # shown, as Python hides a DeprecationWarning; -W still decides
                    warnings.simplefilter("default", AirflowProviderDeprecationWarning)
                warnings.warn(
                    "is_delete_operator_pod is deprecated; use on_finish_action='delete_pod' or 'keep_pod'",
                    AirflowProviderDeprecationWarning,
                    stacklevel=2,
                )
            on_finish_action = "delete_pod" if is_delete_operator_pod else "keep_pod"
        check_choice("on_finish_action", on_finish_action, ON_FINISH_ACTIONS)
        check_choice("on_kill_action", on_kill_action, ON_KILL_ACTIONS)
        check_whole_number("disruption_relaunches", disruption_relaunches, minimum=0, of="")
        arguments_given = locals()
        for argument in _STORED_AS_GIVEN:
            setattr(self, argument, arguments_given[argument])
        self.cmds = cmds or []
        self.arguments = arguments or []
        self.labels = labels or {}
        self.annotations = annotations or {}
        # `durable` supersedes `reattach_on_restart` in the official provider; unset means True.
        self.reattach_on_restart = next((v for v in (durable, reattach_on_restart) if v is not None), True)
        self.base_container_name = base_container_name or "base"
        # BaseOperator owns `self.resources` (executor resources); the guide's pod resources dict
        # is the pod's, so it lives under another name.
        self.pod_resources = resources
        self.skip_on_exit_code: Container[int] = (
            (skip_on_exit_code,) if isinstance(skip_on_exit_code, int) else skip_on_exit_code or ()
        )
        # The official operator's forms: None, one class (or instance), or a list of them.
        self.callbacks = (
            list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks] if callbacks else []
        )
        self._submitted: tuple[str, str] | None = None

    def _render_nested_template_fields(
        self, content: Any, context: Context, jinja_env: Any, seen_oids: set[int]
    ) -> None:
        """Render the templated attributes of Kubernetes objects inside template fields."""
        nested = NESTED_TEMPLATE_FIELDS.get(type(content).__name__) if is_model(content) else None
        if nested is None or id(content) in seen_oids:
            return super()._render_nested_template_fields(content, context, jinja_env, seen_oids)
        seen_oids.add(id(content))
        self._do_render_template_fields(content, nested, context, jinja_env, seen_oids)

    # -- identity and spec ---------------------------------------------------------------------
    @property
    def cluster_ref(self) -> ClusterRef:
        return ClusterRef(
            conn_id=self.kubernetes_conn_id or None,
            config_file=self.config_file or None,
            cluster_context=self.cluster_context or None,
            in_cluster=self.in_cluster,
        )

    @functools.cached_property
    def client(self) -> Any:
        """The official operator's sync ``kubernetes.client.CoreV1Api`` on this task's cluster, for
        callbacks and subclasses (needs the ``kubernetes`` package, as the official provider)."""
        from kubernetes import client as sync_client  # type: ignore[import-untyped]
        from kubernetes import config as sync_config

        config = asyncio.run(resolve_cluster(self.cluster_ref))
        if config.in_cluster:
            configuration = sync_client.Configuration()
            sync_config.load_incluster_config(client_configuration=configuration)
            return sync_client.CoreV1Api(sync_client.ApiClient(configuration))
        api = sync_config.new_client_from_config_dict(config.kubeconfig, context=config.context)
        return sync_client.CoreV1Api(api)

    def _callback(self, method: str, context: Context, **kwargs: Any) -> None:
        """A worker-side moment of the official callbacks (``mode="sync"``, as the official); an
        exception fails the task, as with the official operator."""
        for function in filter(None, (getattr(callback, method, None) for callback in self.callbacks)):
            mode = user_callbacks.execution_mode("sync")
            function(client=self.client, mode=mode, context=context, operator=self, **kwargs)

    @staticmethod
    def task_identity(context: Context) -> TaskIdentity:
        ti = context["ti"]
        map_index = ti.map_index if ti.map_index is not None else -1
        return TaskIdentity(ti.dag_id, ti.task_id, ti.run_id, map_index, ti.try_number)

    def build_pod(
        self, context: Context, default_namespace: str | None, connection_extras: dict[str, Any] | None = None
    ) -> V1Pod:
        """The pod this task runs; pure apart from reading the template file.

        `default_namespace` and `connection_extras` (XCom sidecar image and resources) come from
        the resolved connection, as with the official operator.
        """
        given = {f.name: getattr(self, f.name) for f in fields(PodArguments) if hasattr(self, f.name)}
        arguments = PodArguments(**{**given, "resources": self.pod_resources})
        extras = connection_extras or {}
        if image := extras.get("xcom_sidecar_container_image"):
            arguments.xcom_sidecar_image = image
        if value := extras.get("xcom_sidecar_container_resources"):
            arguments.xcom_sidecar_resources = json.loads(value) if isinstance(value, str) else value
        if self.pod_template_file:
            template: dict[str, Any] | None = read_pod_template(self.pod_template_file)
        else:
            template = pod_template_from_dict(self.pod_template_dict) if self.pod_template_dict else None
        pod = build_pod(
            arguments,
            identity=self.task_identity(context),
            template=template,
            full_pod_spec=self.full_pod_spec,
            default_namespace=default_namespace,
        )
        # The deployment's cluster policy (airflow_local_settings.pod_mutation_hook), as for the
        # official operator (Airflow's own is a no-op); looked up at call time so that settings
        # loaded later apply.
        import airflow.settings

        airflow.settings.pod_mutation_hook(pod)  # type: ignore[no-untyped-call]
        return pod

    # -- the official operator's subclass API ------------------------------------------------------
    @functools.cached_property
    def hook(self) -> KubernetesConnectionHook:
        """The connection's hook (the connection form only: the cluster is reached through `client`)."""
        return KubernetesConnectionHook(self.kubernetes_conn_id or DEFAULT_CONN_ID)

    def build_pod_request_obj(self, context: Context | None = None) -> V1Pod:
        """The pod this task creates; without a context, as a first try of a ``dry_run`` run."""
        if context is None:
            ti = SimpleNamespace(
                dag_id=self.dag_id, task_id=self.task_id, run_id="dry_run", map_index=-1, try_number=1
            )
            context = cast("Context", {"ti": ti})
        return self.build_pod(context, None)

    def dry_run(self) -> None:
        """Print the pod's YAML, creating nothing (``airflow tasks test`` dry runs, as the official)."""
        import yaml

        print(yaml.safe_dump(to_api_dict(self.build_pod_request_obj()), sort_keys=False))

    def find_pod(self, namespace: str, context: Context, *, exclude_checked: bool = True) -> V1Pod | None:
        """This try's pod in `namespace`, or None. Finalized (checked) pods are always excluded."""

        async def find(client: ClusterClient) -> V1Pod | None:
            selector = task_selector(self.task_identity(context), include_try=True)
            found = await pods.find_task_pods(client, namespace, selector)
            raw = await pods.read_pod_json(client, namespace, found[0].name) if found else None
            return to_v1pod(raw) if raw else None

        return self._on_cluster(find)

    def get_or_create_pod(self, pod_request_obj: V1Pod, context: Context) -> V1Pod:
        """Adopt this task's pod (as `execute` does) or create `pod_request_obj`; the pod as created."""

        async def get_or_create(client: ClusterClient) -> V1Pod:
            pod = to_v1pod(pod_request_obj)
            state = await self._adopt_or_create(client, pod, self.task_identity(context))
            return to_v1pod(await pods.read_pod_json(client, state.namespace, state.name) or {})

        return self._on_cluster(get_or_create)

    def cleanup(
        self, pod: Any, remote_pod: Any, xcom_result: Any = None, context: Context | None = None
    ) -> None:
        """Delete or keep the pod as `on_finish_action` says, judging by `remote_pod`'s phase."""
        phase = getattr(getattr(remote_pod, "status", None), "phase", None)
        outcome = PodOutcome(
            Status.SUCCESS if phase == "Succeeded" else Status.FAILED,
            pod.metadata.namespace,
            pod.metadata.name,
            exit_code=0 if phase in ("Succeeded", "Failed") else None,
        )
        self._on_cluster(lambda client: finish_pod(client, outcome, self._finish_settings(), self.log))

    # -- execute: submit and defer -------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        return self._launch(context, _Launch())

    def _launch(self, context: Context, launch: _Launch) -> Any:
        """Create (or adopt) the pod and follow it: deferred, or here with ``deferrable=False``."""
        # The pod is built and validated before the first API call: a bad spec creates nothing.
        identity = self.task_identity(context)
        trigger = self._on_cluster(lambda client: self._submit(context, identity, client, launch))
        if isinstance(trigger, QuotaTrigger):
            if self.deferrable:
                self.defer(trigger=trigger, method_name="execute_after_quota")
            return self.execute_after_quota(context, self._on_cluster(lambda c: trigger.wait(c, self.log)))
        self._submitted = (trigger.namespace, trigger.pod_name)
        # The official operator's XComs: downstream tasks and the PodLink read them.
        context["ti"].xcom_push(key=POD_NAME_XCOM, value=trigger.pod_name)
        context["ti"].xcom_push(key=POD_NAMESPACE_XCOM, value=trigger.namespace)
        if self.log_formatter is not None and self.deferrable and trigger.settings.log_formatter is None:
            self.log.warning(
                "log_formatter %r cannot be imported by the triggerer (a lambda or a local function): "
                "the trigger logs lines as [container] line; define it at module level in an "
                "importable module to use it there",
                self.log_formatter,
            )
        if not self.deferrable:
            # Followed in this worker process by the trigger's own engine.
            outcome = self._on_cluster(lambda client: trigger.follow(client, self.log, self.log_formatter))
            return self.execute_complete(context, outcome.to_payload())
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=self.execution_timeout + _DEFERRAL_GRACE if self.execution_timeout else None,
        )

    async def _submit(
        self, context: Context, identity: TaskIdentity, client: ClusterClient, launch: _Launch
    ) -> PodTrigger | QuotaTrigger:
        """Build the pod, adopt this task's or create it; the trigger that follows it, or the one
        that waits for the namespace's quota to have room for it (as long as the pod may take to be
        scheduled, from the first refusal)."""
        pod = self.build_pod(context, client.config.namespace, client.config.extras)
        launch.mark(pod, self.log, self.disruption_relaunches)
        if launch.replaces is not None:  # gone or ended (the trigger waited): clean it up first
            await finish_pod(client, launch.replaces, self._finish_settings(), self.log, report=False)
        self._callback("on_pod_manifest_created", context, pod_request=pod)
        # As the official operator: a scheduling window, then the startup window.
        window = self.schedule_timeout_seconds or self.startup_timeout_seconds
        try:
            state = await self._adopt_or_create(client, pod, identity)
        except QuotaExceeded as exc:
            since, message = launch.quota_since or time.time(), exc.message
            self.log.info(
                "the namespace's quota has no room for the pod yet: %s; waiting up to %d s", message, window
            )
            return QuotaTrigger(
                namespace=pod.metadata.namespace,
                cluster=self.cluster_ref.to_dict(),
                refusal=message,
                deadline=since + window,
                waiting_since=since,
                relaunch=launch.relaunch,
                cluster_fingerprint=client.fingerprint,
            )
        if self.callbacks:
            created = await pods.read_pod_json(client, state.namespace, state.name)
            self._callback("on_pod_creation", context, pod=to_v1pod(created) if created else None)
        started = time.time()
        return PodTrigger(
            pod_name=state.name,
            namespace=state.namespace,
            cluster=self.cluster_ref.to_dict(),
            base_container_name=self.base_container_name,
            get_logs=self.get_logs,
            do_xcom_push=self.do_xcom_push,
            startup_deadline=started + self.startup_timeout_seconds,
            schedule_deadline=started + window,
            startup_timeout_seconds=float(self.startup_timeout_seconds),
            container_logs=self.container_logs,
            init_container_logs=self.init_container_logs,
            container_name_log_prefix_enabled=self.container_name_log_prefix_enabled,
            log_formatter=formatter_path(self.log_formatter),
            execution_deadline=(
                started + self.execution_timeout.total_seconds() if self.execution_timeout else None
            ),
            on_kill_action=self.on_kill_action,
            cluster_fingerprint=client.fingerprint,
            fallback_poll_seconds=max(float(self.poll_interval), 30.0),
            log_events_on_startup=self.log_events_on_startup,
            secret_env_names=secret_env_names(pod),
            callbacks=user_callbacks.classpaths(self.callbacks),
            end_from_trigger=self._end_from_trigger(),
        )

    def execute_after_quota(self, context: Context, event: dict[str, Any]) -> Any:
        """The quota wait ended: create the pod now, or fail once the scheduling window ran out."""
        if not event["quota_free"]:
            raise PodFailedError(
                f"the namespace's quota {event['quota']!r} had no room for the pod in {event['waited']:g} s. "
                "Fix: raise or free the quota, or raise startup_timeout_seconds / schedule_timeout_seconds"
            )
        return self._launch(context, _Launch(event["relaunch"], quota_since=event["waiting_since"]))

    async def _adopt_or_create(self, client: ClusterClient, pod: V1Pod, identity: TaskIdentity) -> PodState:
        namespace = pod.metadata.namespace
        if (adopted := await self._adopt(client, namespace, identity)) is not None:
            return adopted
        try:
            created = await pods.create_pod(client, pod)
        except ClusterUnreachableError:
            # The create may have succeeded with its answer lost: remove the pod it may have
            # made (the name is this try's own), so that failing leaves nothing behind.
            with contextlib.suppress(Exception):
                await pods.delete_pod(client, namespace, pod.metadata.name)
            raise
        if created is None:  # same deterministic name: this very try created it before, or another task
            created = await pods.read_pod(client, namespace, pod.metadata.name)
            if created is None or not belongs_to_try(created.labels, identity):
                raise InvalidArgumentError(
                    "name",
                    f"a pod named {pod.metadata.name!r} already exists in namespace {namespace!r} and "
                    "belongs to another task",
                    "set random_name_suffix=True or choose another name",
                )
            if created.deleting:
                raise KpoAsyncError(
                    f"pod {namespace}/{created.name} of this same try is still being deleted; "
                    "clear the task again once it is gone"
                )
        self.log.info("created pod %s/%s", namespace, created.name)
        return created

    async def _adopt(self, client: ClusterClient, namespace: str, identity: TaskIdentity) -> PodState | None:
        """Find this task's unfinished pod: this very try's (always ours) or an interrupted earlier try's."""
        candidates = await pods.find_task_pods(client, namespace, task_selector(identity, include_try=False))
        current = [c for c in candidates if c.labels.get("try_number") == str(identity.try_number)]
        earlier = [c for c in candidates if c not in current]
        chosen = current[0] if current else None
        if chosen is not None:
            self.log.info("found pod %s/%s created earlier by this same try", namespace, chosen.name)
        elif earlier and self.reattach_on_restart:
            chosen = earlier.pop(0)
            earlier_try = chosen.labels.get("try_number")
            self.log.info("reattaching to pod %s/%s (created by try %s)", namespace, chosen.name, earlier_try)
            followed = {FOLLOWED_BY_TRY_ANNOTATION: str(identity.try_number)}
            if not await pods.patch_metadata(
                client, namespace, chosen.name, what="adopting", annotations=followed
            ):
                chosen = None  # gone meanwhile: this try creates its own
        for stale in earlier:  # nothing left orphaned by interrupted tries
            self.log.info("deleting pod %s/%s left by an interrupted earlier try", namespace, stale.name)
            await pods.delete_pod(client, namespace, stale.name)
        return chosen

    # -- resume: finalize ----------------------------------------------------------------------
    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        outcome = PodOutcome.from_payload(event)
        namespace, pod_name = outcome.namespace, outcome.pod_name
        if outcome.disruption:
            if (refused := self._why_not_relaunched(outcome)) is None:
                return self._launch(context, _Launch(outcome.relaunch + 1, replaces=outcome))
            outcome = replace(outcome, message=f"{outcome.message}; not relaunched: {refused}")
        self._on_cluster(lambda client: self._finalize(client, outcome, context, event))
        if outcome.succeeded:
            self.log.info("pod %s/%s succeeded", namespace, pod_name)
            return outcome.xcom if self.do_xcom_push else None
        if self.do_xcom_push and outcome.xcom is not None:  # pushed on failure too, as the official
            # What Airflow pushes for a returned value (`multiple_outputs` fanned out).
            if self.multiple_outputs and isinstance(outcome.xcom, Mapping):
                for key, item in outcome.xcom.items():
                    context["ti"].xcom_push(key=str(key), value=item)
            context["ti"].xcom_push(key="return_value", value=outcome.xcom)
        exit_code = outcome.exit_code
        if exit_code is not None and exit_code in self.skip_on_exit_code:
            raise AirflowSkipException(f"pod {namespace}/{pod_name} exited with code {exit_code}: skipping")
        message = outcome.failure_message()
        if outcome.status is Status.TIMEOUT and outcome.reason == "ExecutionTimeout":
            raise AirflowTaskTimeout(message)
        if outcome.reason == "InvalidImageName":
            raise PodCannotRunError(
                f"{message}\nNo retry was made: the image reference cannot be pulled as written."
            )
        raise PodFailedError(message)

    def _why_not_relaunched(self, outcome: PodOutcome) -> str | None:
        """Why a pod the cluster took away is not replaced; None: it is."""
        if outcome.started and not self.relaunch_started_pods:
            return (
                "its base container had started (relaunch_started_pods=True allows work that may run again)"
            )
        if outcome.relaunch >= self.disruption_relaunches:
            return f"disruption_relaunches={self.disruption_relaunches} relaunches were used"
        return None

    async def _finalize(
        self, client: ClusterClient, outcome: PodOutcome, context: Context, event: Any
    ) -> None:
        """The official callbacks' last moments, with the pod as it is now (None once gone), around
        its cleanup."""
        raw = self.callbacks and await pods.read_pod_json(client, outcome.namespace, outcome.pod_name)
        pod = to_v1pod(raw) if raw else None
        self._callback("on_operator_resuming", context, pod=pod, event=event)
        self._callback("on_pod_completion", context, pod=pod)
        self._callback("on_pod_teardown", context, pod=pod)
        await finish_pod(client, outcome, self._finish_settings(), self.log)
        self._callback("on_pod_cleanup", context, pod=pod)

    def _finish_settings(self) -> FinishSettings:
        skip = list(self.skip_on_exit_code) if isinstance(self.skip_on_exit_code, Iterable) else []
        fields = ("on_finish_action", "log_events_on_failure", "log_pod_spec_on_failure")
        return FinishSettings(**{name: getattr(self, name) for name in fields}, skip_on_exit_code=skip)

    def _end_from_trigger(self) -> dict[str, Any] | None:
        """What the trigger needs to end the task itself (`end_from_trigger`); None: a worker does."""
        if not (setting("end_from_trigger") if self.end_from_trigger is None else self.end_from_trigger):
            return None
        worker_needed = {
            "Airflow < 3.3's triggerer cannot end a task for its trigger": not triggerer_ends_tasks(),
            "callbacks run their last moments on a worker": self.callbacks,
            "multiple_outputs fans the XCom out on a worker": self.multiple_outputs,
            "a worker records the outlets' asset events": self.outlets,
            f"{type(self).__name__} overrides execute_complete": (
                type(self).execute_complete is not AsyncKubernetesPodOperator.execute_complete
            ),
            "skip_on_exit_code is not a list of exit codes": not isinstance(self.skip_on_exit_code, Iterable),
        }
        if why := next((why for why, needed in worker_needed.items() if needed), None):
            self.log.info("end_from_trigger: this task finishes on a worker, as %s", why)
            return None
        return asdict(self._finish_settings())

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        # Airflow's deferral timeout fired before our trigger's event.
        if next_method == "__fail__":
            self._on_cluster(lambda client: self._stop_current_pods(client, context))
        return super().resume_execution(next_method, next_kwargs, context)

    async def _stop_current_pods(self, client: ClusterClient, context: Context) -> None:
        """As `on_kill_action` says: delete this try's pods, or release them (keep_pod)."""
        identity = self.task_identity(context)
        # Where execute put the pod (its namespace may come from a template or full_pod_spec).
        namespace = (
            context["ti"].xcom_pull(task_ids=self.task_id, key=POD_NAMESPACE_XCOM)
            or self.namespace
            or client.config.namespace
            or "default"
        )
        for state in await pods.find_task_pods(client, namespace, task_selector(identity, include_try=True)):
            stop = pods.delete_pod if self.on_kill_action == "delete_pod" else pods.release_pod
            await stop(client, namespace, state.name)

    def on_kill(self) -> None:
        """Killed while submitting or while running non-deferrably: delete our pod (or let it go)."""
        if self._submitted is None:
            return
        namespace, name = self._submitted
        stop = pods.delete_pod if self.on_kill_action == "delete_pod" else pods.release_pod
        self._on_cluster(lambda client: stop(client, namespace, name))

    def _on_cluster(self, action: Callable[[ClusterClient], Awaitable[T]]) -> T:
        """Run `action` with a client of this task's cluster, in an event loop of its own."""
        if self.callbacks:
            self.client  # noqa: B018 - resolved before the event loop below, where callbacks run

        async def run() -> T:
            async with open_client(self.cluster_ref) as client:
                return await action(client)

        return asyncio.run(run())


@dataclass(frozen=True)
class _Launch:
    """Which pod of the try `_launch` creates: the first, or relaunch `relaunch` > 0 replacing the
    one the cluster took away (`replaces`); `quota_since`: when the quota first refused its creation."""

    relaunch: int = 0
    replaces: PodOutcome | None = None
    quota_since: float | None = None

    def mark(self, pod: V1Pod, log: Any, relaunches: int) -> None:
        """Name a replacement (the same name whoever creates it) and annotate what the timeline shows."""
        notes = {RELAUNCH_ANNOTATION: str(self.relaunch)} if self.relaunch else {}
        if self.quota_since:
            notes[QUOTA_WAIT_ANNOTATION] = f"{time.time() - self.quota_since:.0f}"
        pod.metadata.annotations = {**(pod.metadata.annotations or {}), **notes}
        if self.relaunch:
            suffix = f"-r{self.relaunch}"
            pod.metadata.name = pod.metadata.name[: 63 - len(suffix)].rstrip("-") + suffix
        if self.replaces:  # said once, not again when the replacement waited for quota
            why, where = self.replaces.message, f"{pod.metadata.namespace}/{pod.metadata.name}"
            log.info("%s; relaunch %d of %d as pod %s", why, self.relaunch, relaunches, where)


#: Arguments stored as given, under their own names (those normalized in __init__ are then
#: overwritten). `resources` is BaseOperator's own attribute; the pod's are `pod_resources`.
_STORED_AS_GIVEN = tuple(
    name
    for name in inspect.signature(AsyncKubernetesPodOperator.__init__).parameters
    if name not in {"self", "kwargs", "resources", "durable", "is_delete_operator_pod"}
)


def secret_env_names(pod: V1Pod) -> list[str]:
    """Names (never values) of env vars the worker's secrets masker hides.

    The masker knows this task's secrets (sensitive names, Variables and connections it read);
    the triggerer's does not. The trigger gets these names and registers the values it reads
    from the pod with its own masker, so a pod echoing a secret is masked in the trigger log too.
    """
    env = pods.container_env(to_api_dict(pod))
    return sorted({e["name"] for e in env if e.get("value") and redact(e["value"], e["name"]) != e["value"]})
