"""The fake Kubernetes API answers the real client like the API server does (what other tests rely on)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from tests.fakes.kube import APPLY, FakeKube


@pytest.fixture
def api(fake_kube: FakeKube, tmp_path: Path) -> Any:
    fake_kube.state.namespace("argo")
    fake_kube.state.namespace("atlas")
    return config.new_client_from_config(config_file=str(fake_kube.kubeconfig(tmp_path / "kc")))


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body or "")
    return body


def test_errors_are_status_objects(fake_kube: FakeKube, api: Any, tmp_path: Path) -> None:
    core: Any = client.CoreV1Api(api)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", "argo")
    body = status_of(missing.value)
    assert (missing.value.status, body["kind"], body["reason"], body["code"]) == (404, "Status", "NotFound", 404)
    assert body["message"] == 'configmaps "nope" not found'

    fake_kube.state.deny("list", "secrets", namespace="argo")
    with pytest.raises(ApiException) as forbidden:
        core.list_namespaced_secret("argo")
    assert forbidden.value.status == 403 and status_of(forbidden.value)["reason"] == "Forbidden"
    assert (
        'cannot list resource "secrets" in API group "" in the namespace "argo"'
        in status_of(forbidden.value)["message"]
    )

    core.create_namespaced_config_map("argo", {"metadata": {"name": "a"}, "data": {"k": "v"}})
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map("argo", {"metadata": {"name": "a"}, "data": {}})
    assert exists.value.status == 409 and status_of(exists.value)["reason"] == "AlreadyExists"

    stale = core.read_namespaced_config_map("a", "argo")
    core.patch_namespaced_config_map("a", "argo", {"data": {"k": "v2"}})
    stale.data = {"k": "v3"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("a", "argo", stale)
    assert conflict.value.status == 409 and status_of(conflict.value)["reason"] == "Conflict"

    bad = config.new_client_from_config(config_file=str(fake_kube.kubeconfig(tmp_path / "bad", token="x")))
    with pytest.raises(ApiException) as unauthorized:
        client.CoreV1Api(bad).list_namespace()
    assert unauthorized.value.status == 401


def test_lists_selectors_and_paging(fake_kube: FakeKube, api: Any) -> None:
    state = fake_kube.state
    for i, tier in enumerate(["web", "web", "db", "cache"]):
        state.configmap("argo", f"cm-{i}", {"i": str(i)}, labels={"tier": tier, **({"extra": "1"} if i else {})})
    core: Any = client.CoreV1Api(api)
    raw = json.loads(core.list_namespaced_config_map("argo", _preload_content=False).data)
    assert raw["kind"] == "ConfigMapList" and raw["apiVersion"] == "v1" and raw["metadata"]["resourceVersion"]
    assert all("kind" not in item for item in raw["items"]), "built-in list items carry no kind"

    def names(selector: str) -> list[str]:
        return [c.metadata.name for c in core.list_namespaced_config_map("argo", label_selector=selector).items]

    assert names("tier=web") == ["cm-0", "cm-1"]
    assert names("tier in (db,cache),extra") == ["cm-2", "cm-3"]
    assert names("tier notin (web),!extra") == []
    assert names("tier!=web") == ["cm-2", "cm-3"]

    first = core.list_namespaced_config_map("argo", limit=3)
    assert len(first.items) == 3 and first.metadata._continue and first.metadata.remaining_item_count == 1
    rest = core.list_namespaced_config_map("argo", limit=3, _continue=first.metadata._continue)
    assert [c.metadata.name for c in rest.items] == ["cm-3"] and not rest.metadata._continue

    custom: Any = client.CustomObjectsApi(api)
    state.workflow_template("argo", "wt", {"entrypoint": "main"})
    listed = custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", "argo", "workflowtemplates")
    assert listed["kind"] == "WorkflowTemplateList"
    assert listed["items"][0]["kind"] == "WorkflowTemplate", "custom resource list items keep kind"


def test_patch_types_and_server_side_apply(fake_kube: FakeKube, api: Any) -> None:
    custom: Any = client.CustomObjectsApi(api)
    args = ("argoproj.io", "v1alpha1", "argo", "cronworkflows", "c")
    fake_kube.state.cron_workflow("argo", "c", schedule="0 1 * * *")
    with pytest.raises(ApiException) as unsupported:
        custom.patch_namespaced_custom_object(
            *args, {"spec": {"suspend": True}}, _content_type="application/strategic-merge-patch+json"
        )
    assert unsupported.value.status == 415

    body: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "c", "namespace": "argo", "labels": {"a": "1"}},
        "spec": {"schedule": "0 2 * * *", "timezone": "UTC"},
    }
    with pytest.raises(ApiException) as conflict:
        custom.patch_namespaced_custom_object(*args, body, field_manager="me", _content_type=APPLY)
    assert conflict.value.status == 409
    assert status_of(conflict.value)["details"]["causes"][0]["field"] == ".spec.schedule"
    applied = custom.patch_namespaced_custom_object(*args, body, field_manager="me", force=True, _content_type=APPLY)
    assert applied["spec"]["schedule"] == "0 2 * * *" and applied["metadata"]["generation"] == 2

    del body["spec"]["timezone"]  # a field the manager stops applying is removed
    after = custom.patch_namespaced_custom_object(*args, body, field_manager="me", _content_type=APPLY)
    assert "timezone" not in after["spec"] and after["spec"]["concurrencyPolicy"] == "Forbid"

    patched = custom.patch_namespaced_custom_object(
        *args,
        [
            {"op": "test", "path": "/spec/schedule", "value": "0 2 * * *"},
            {"op": "add", "path": "/spec/suspend", "value": True},
        ],
        _content_type="application/json-patch+json",
    )
    assert patched["spec"]["suspend"] is True
    with pytest.raises(ApiException) as failed_test:
        custom.patch_namespaced_custom_object(
            *args, [{"op": "test", "path": "/spec/schedule", "value": "x"}], _content_type="application/json-patch+json"
        )
    assert failed_test.value.status == 422

    dynamic = DynamicClient(api)
    templates = dynamic.resources.get(api_version="argoproj.io/v1alpha1", kind="WorkflowTemplate")
    created = templates.server_side_apply(
        body={"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate", "metadata": {"name": "n"}, "spec": {}},
        namespace="argo",
        field_manager="me",
    )
    assert created.metadata.name == "n" and created.metadata.uid


def test_scale_subresource_and_controller(fake_kube: FakeKube, api: Any) -> None:
    fake_kube.state.statefulset("atlas", "db", replicas=3)
    apps: Any = client.AppsV1Api(api)
    core: Any = client.CoreV1Api(api)
    scale = apps.read_namespaced_stateful_set_scale("db", "atlas")
    assert (scale.spec.replicas, scale.status.selector) == (3, "app=db")
    assert sorted(p.metadata.name for p in core.list_namespaced_pod("atlas", label_selector="app=db").items) == [
        "db-0",
        "db-1",
        "db-2",
    ]
    apps.patch_namespaced_stateful_set_scale("db", "atlas", {"spec": {"replicas": 1}})
    sts = apps.read_namespaced_stateful_set("db", "atlas")
    assert sts.status.observed_generation < sts.metadata.generation, "the controller has not caught up yet"
    time.sleep(fake_kube.state.controller_delay + 0.1)
    pods = core.list_namespaced_pod("atlas", label_selector="app=db").items
    assert {p.metadata.name: p.metadata.deletion_timestamp is not None for p in pods} == {
        "db-0": False,
        "db-1": True,
        "db-2": True,
    }
    fake_kube.state.wait_converged()
    assert [p.metadata.name for p in core.list_namespaced_pod("atlas", label_selector="app=db").items] == ["db-0"]
    sts = apps.read_namespaced_stateful_set("db", "atlas")
    assert (sts.status.replicas, sts.status.ready_replicas) == (1, 1)
