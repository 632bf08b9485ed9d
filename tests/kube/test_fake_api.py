"""The fake API server answers the real ``kubernetes`` client the way an API server does.

The fault tests trust it, so what it still serves is pinned here, through the client; what it
no longer models is covered by the real API server (see tests/kube_fake.py).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
from kube_fake import FakeKubeAPI, running_fake_kube_api
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"


def core(fake: FakeKubeAPI) -> Any:
    return client.CoreV1Api(fake.api_client())


def secret(name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, **extra}


def label(value: str) -> list[dict[str, Any]]:
    return [{"op": "add", "path": "/metadata/labels/x", "value": value}]


def test_reading_a_missing_object_raises_a_404_not_found(kube_api: FakeKubeAPI) -> None:
    with pytest.raises(ApiException) as caught:
        core(kube_api).read_namespaced_secret("absent", "ops")
    assert caught.value.status == 404
    assert '"reason":"NotFound"' in caught.value.body.replace(" ", "")


def test_creating_an_existing_name_raises_409_already_exists(kube_api: FakeKubeAPI) -> None:
    core(kube_api).create_namespaced_secret("ops", secret("a"))
    with pytest.raises(ApiException) as caught:
        core(kube_api).create_namespaced_secret("ops", secret("a"))
    assert caught.value.status == 409
    assert "AlreadyExists" in caught.value.body


def test_every_write_increments_the_resource_version(kube_api: FakeKubeAPI) -> None:
    api = core(kube_api)
    first = api.create_namespaced_secret("ops", secret("a"))
    second = api.patch_namespaced_secret("a", "ops", label("1"))
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)


def test_a_write_with_a_stale_resource_version_raises_409_conflict(kube_api: FakeKubeAPI) -> None:
    api = core(kube_api)
    stale = api.create_namespaced_secret("ops", secret("a")).metadata.resource_version
    api.patch_namespaced_secret("a", "ops", label("1"))
    with pytest.raises(ApiException) as caught:
        api.replace_namespaced_secret(
            "a", "ops", {"metadata": {"name": "a", "resourceVersion": stale}}
        )
    assert caught.value.status == 409
    assert "Conflict" in caught.value.body


def test_a_json_patch_that_sets_a_stale_resource_version_raises_409(kube_api: FakeKubeAPI) -> None:
    api = core(kube_api)
    stale = api.create_namespaced_secret("ops", secret("a")).metadata.resource_version
    kube_api.put("secrets", {"metadata": {"name": "a", "namespace": "ops"}, "data": {}})
    with pytest.raises(ApiException) as caught:
        api.patch_namespaced_secret(
            "a", "ops", [{"op": "replace", "path": "/metadata/resourceVersion", "value": stale}]
        )
    assert caught.value.status == 409


def test_a_field_selector_on_the_type_filters_a_list(kube_api: FakeKubeAPI) -> None:
    api = core(kube_api)
    api.create_namespaced_secret("ops", secret("pull", type=DOCKER_CONFIG_JSON))
    api.create_namespaced_secret("dev", secret("other", type="Opaque"))
    items = api.list_secret_for_all_namespaces(field_selector=f"type={DOCKER_CONFIG_JSON}").items
    assert [s.metadata.name for s in items] == ["pull"]
    assert kube_api.requests[-1].query["fieldSelector"] == f"type={DOCKER_CONFIG_JSON}"


def test_a_namespaced_list_holds_only_that_namespace(kube_api: FakeKubeAPI) -> None:
    api = core(kube_api)
    api.create_namespaced_service_account("ops", {"metadata": {"name": "a"}})
    api.create_namespaced_service_account("dev", {"metadata": {"name": "b"}})
    assert [sa.metadata.name for sa in api.list_namespaced_service_account("ops").items] == ["a"]


def test_a_json_patch_applies_add_replace_and_remove_in_order(kube_api: FakeKubeAPI) -> None:
    core(kube_api).create_namespaced_secret("ops", secret("a", {"x": "1"}, data={"k": "dg=="}))
    patched = core(kube_api).patch_namespaced_secret(
        "a",
        "ops",
        [
            {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "s"},
            {"op": "replace", "path": "/data/k", "value": "dw=="},
            {"op": "remove", "path": "/metadata/labels/x"},
        ],
    )
    assert patched.metadata.labels == {"app.kubernetes.io/name": "s"}
    assert patched.data == {"k": "dw=="}
    assert kube_api.writes()[-1].content_type == "application/json-patch+json"


def test_a_json_patch_reaches_into_lists_by_index(kube_api: FakeKubeAPI) -> None:
    group = "admissionregistration.k8s.io"
    hooks = [{"name": "a.example.com", "clientConfig": {"url": "https://a"}}]
    kube_api.put(
        "mutatingwebhookconfigurations", {"metadata": {"name": "w"}, "webhooks": hooks}, group
    )
    client.AdmissionregistrationV1Api(kube_api.api_client()).patch_mutating_webhook_configuration(
        "w",
        [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "Zm9v"}],
        _preload_content=False,  # the model would insist on fields a real server defaults
    )
    stored = kube_api.get("mutatingwebhookconfigurations", "w", group=group)
    assert stored is not None
    assert stored["webhooks"][0]["clientConfig"] == {"url": "https://a", "caBundle": "Zm9v"}


def test_a_json_patch_removing_a_missing_key_is_rejected_with_422(kube_api: FakeKubeAPI) -> None:
    core(kube_api).create_namespaced_secret("ops", secret("a"))
    with pytest.raises(ApiException) as caught:
        core(kube_api).patch_namespaced_secret(
            "a", "ops", [{"op": "remove", "path": "/data/nothing"}]
        )
    assert caught.value.status == 422


def test_a_patch_that_is_not_a_json_patch_is_refused_with_415(kube_api: FakeKubeAPI) -> None:
    core(kube_api).create_namespaced_secret("ops", secret("a"))
    response = httpx.patch(
        kube_api.host + "/api/v1/namespaces/ops/secrets/a",
        content=json.dumps({"metadata": {"labels": {"x": "1"}}}),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert response.status_code == 415


def test_an_injected_failure_answers_once_then_the_real_thing(kube_api: FakeKubeAPI) -> None:
    core(kube_api).create_namespaced_secret("ops", secret("a"))
    kube_api.fail("GET", "/api/v1/namespaces/ops/secrets/a", 503, "ServiceUnavailable")
    with pytest.raises(ApiException) as caught:
        core(kube_api).read_namespaced_secret("a", "ops")
    assert caught.value.status == 503
    assert core(kube_api).read_namespaced_secret("a", "ops").metadata.name == "a"


def test_a_callback_runs_before_the_matching_request_is_handled(kube_api: FakeKubeAPI) -> None:
    api = core(kube_api)
    read = api.create_namespaced_secret("ops", secret("a"))

    def concurrent_writer() -> None:
        kube_api.put("secrets", {"metadata": {"name": "a", "namespace": "ops"}, "data": {}})

    kube_api.before("PUT", "/api/v1/namespaces/ops/secrets/a", concurrent_writer)
    body = {"metadata": {"name": "a", "resourceVersion": read.metadata.resource_version}}
    with pytest.raises(ApiException) as caught:
        api.replace_namespaced_secret("a", "ops", body)
    assert caught.value.status == 409  # the callback's write came first
    api.replace_namespaced_secret("a", "ops", {"metadata": {"name": "a"}})  # once only


def test_a_watch_streams_writes_as_they_happen(kube_api: FakeKubeAPI) -> None:
    api = core(kube_api)
    since = api.list_namespaced_secret("ops").metadata.resource_version
    seen: list[tuple[str, str]] = []
    stream = watch.Watch()

    def consume() -> None:
        for event in stream.stream(
            api.list_namespaced_secret, "ops", resource_version=since, timeout_seconds=5
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "MODIFIED":
                stream.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    api.create_namespaced_secret("dev", secret("elsewhere"))
    api.create_namespaced_secret("ops", secret("new"))
    api.patch_namespaced_secret("new", "ops", label("1"))
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert seen == [("ADDED", "new"), ("MODIFIED", "new")]


def test_a_watch_from_a_resource_version_replays_only_later_events(kube_api: FakeKubeAPI) -> None:
    api = core(kube_api)
    api.create_namespaced_secret("ops", secret("old"))
    since = api.list_namespaced_secret("ops").metadata.resource_version
    api.create_namespaced_secret("ops", secret("later"))
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            api.list_namespaced_secret, "ops", resource_version=since, timeout_seconds=1
        )
    ]
    assert events == [("ADDED", "later")]


def test_a_watch_ends_when_its_timeout_passes(kube_api: FakeKubeAPI) -> None:
    started = time.monotonic()
    events = list(
        watch.Watch().stream(core(kube_api).list_namespaced_secret, "ops", timeout_seconds=1)
    )
    assert events == []
    assert 0.9 < time.monotonic() - started < 5


def test_the_server_no_longer_answers_once_stopped() -> None:
    with running_fake_kube_api() as fake:
        url = fake.host + "/api/v1/namespaces/ops/secrets"
        assert httpx.get(url).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
