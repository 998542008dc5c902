"""Denied permissions: the real 403 Status, and SelfSubjectAccessReview answers."""

from __future__ import annotations

import json

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.testing.sim import SimCluster, SimConfig


async def test_denied_verb_gets_forbidden_status_and_access_review_agrees() -> None:
    async with SimCluster(SimConfig(denied=frozenset({"delete pods"}))) as sim:
        api = await config.new_client_from_config(config_file=sim.kubeconfig_path)
        async with api:
            core = client.CoreV1Api(api)
            pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "base", "image": "alpine"}]}}
            await core.create_namespaced_pod("default", pod)
            with pytest.raises(ApiException) as info:
                await core.delete_namespaced_pod("p", "default")
            status = json.loads(info.value.body)
            assert info.value.status == 403
            assert status["reason"] == "Forbidden"
            assert status["message"].startswith('pods "p" is forbidden: User ')
            assert 'cannot delete resource "pods"' in status["message"]

            async def allowed(verb: str, resource: str) -> bool:
                body = {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectAccessReview",
                    "spec": {
                        "resourceAttributes": {"namespace": "default", "verb": verb, "resource": resource}
                    },
                }
                review = await client.AuthorizationV1Api(api).create_self_subject_access_review(body)
                return review.status.allowed

            assert await allowed("delete", "pods") is False
            assert await allowed("create", "pods") is True
