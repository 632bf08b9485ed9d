"""The fake API server answers the real ``kubernetes`` client the way an API server does.

Other tests trust it, so its own behaviour is pinned here, through the client.
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

WEBHOOKS = "admissionregistration.k8s.io"


def core(fake: FakeKubeAPI) -> Any:
    return client.CoreV1Api(fake.api_client())


def secret(name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, **extra}


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
    second = api.patch_namespaced_secret(
        "a", "ops", [{"op": "add", "path": "/metadata/labels/x", "value": "1"}]
    )
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)


def test_a_write_with_a_stale_resource_version_raises_409_conflict(kube_api: FakeKubeAPI) -> None:
    api = core(kube_api)
    stale = api.create_namespaced_secret("ops", secret("a")).metadata.resource_version
    api.patch_namespaced_secret(
        "a", "ops", [{"op": "add", "path": "/metadata/labels/x", "value": "1"}]
    )
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


def test_a_label_selector_filters_a_list(kube_api: FakeKubeAPI) -> None:
    api = core(kube_api)
    api.create_namespaced_secret("ops", secret("a", {"app": "swapper", "tier": "web"}))
    api.create_namespaced_secret("ops", secret("b", {"app": "swapper"}))
    api.create_namespaced_secret("dev", secret("c", {"app": "other"}))

    def names(selector: str) -> list[str]:
        items = api.list_secret_for_all_namespaces(label_selector=selector).items
        return [s.metadata.name for s in items]

    assert names("app=swapper") == ["a", "b"]
    assert names("app=swapper,!tier") == ["b"]
    assert names("app in (other, x)") == ["c"]
    assert names("app notin (swapper),tier!=web") == ["c"]
    assert names("tier") == ["a"]


def test_a_namespaced_list_holds_only_that_namespace(kube_api: FakeKubeAPI) -> None:
    api = core(kube_api)
    api.create_namespaced_service_account("ops", {"metadata": {"name": "a"}})
    api.create_namespaced_service_account("dev", {"metadata": {"name": "b"}})
    assert [sa.metadata.name for sa in api.list_namespaced_service_account("ops").items] == ["a"]


def patch(fake: FakeKubeAPI, path: str, media: str, body: Any) -> httpx.Response:
    """A PATCH with an explicit content type, straight on the wire."""
    return httpx.patch(
        fake.host + path,
        content=json.dumps(body),
        headers={"Content-Type": f"application/{media}+json"},
    )


def test_a_strategic_merge_patch_merges_webhooks_by_name(kube_api: FakeKubeAPI) -> None:
    hooks = [
        {"name": "a.example.com", "clientConfig": {"url": "https://a"}},
        {"name": "b.example.com", "clientConfig": {"url": "https://b"}},
    ]
    kube_api.put(
        "mutatingwebhookconfigurations", {"metadata": {"name": "w"}, "webhooks": hooks}, WEBHOOKS
    )
    response = patch(
        kube_api,
        f"/apis/{WEBHOOKS}/v1/mutatingwebhookconfigurations/w",
        "strategic-merge-patch",
        {"webhooks": [{"name": "b.example.com", "clientConfig": {"caBundle": "Zm9v"}}]},
    )
    assert response.status_code == 200
    assert [h["clientConfig"] for h in response.json()["webhooks"]] == [
        {"url": "https://a"},
        {"url": "https://b", "caBundle": "Zm9v"},
    ]


def test_a_merge_patch_replaces_lists_and_deletes_keys_set_to_null(kube_api: FakeKubeAPI) -> None:
    kube_api.put(
        "serviceaccounts",
        {
            "metadata": {"name": "sa", "namespace": "ops", "labels": {"a": "1", "b": "2"}},
            "imagePullSecrets": [{"name": "one"}, {"name": "two"}],
        },
    )
    response = patch(
        kube_api,
        "/api/v1/namespaces/ops/serviceaccounts/sa",
        "merge-patch",
        {"metadata": {"labels": {"a": None}}, "imagePullSecrets": [{"name": "three"}]},
    )
    assert response.json()["metadata"]["labels"] == {"b": "2"}
    assert response.json()["imagePullSecrets"] == [{"name": "three"}]


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


def test_a_json_patch_removing_a_missing_key_is_rejected_with_422(kube_api: FakeKubeAPI) -> None:
    core(kube_api).create_namespaced_secret("ops", secret("a"))
    with pytest.raises(ApiException) as caught:
        core(kube_api).patch_namespaced_secret(
            "a", "ops", [{"op": "remove", "path": "/data/nothing"}]
        )
    assert caught.value.status == 422


def test_a_secret_type_cannot_change(kube_api: FakeKubeAPI) -> None:
    core(kube_api).create_namespaced_secret("ops", secret("a", type="Opaque"))
    with pytest.raises(ApiException) as caught:
        core(kube_api).patch_namespaced_secret(
            "a", "ops", [{"op": "add", "path": "/type", "value": "kubernetes.io/tls"}]
        )
    assert caught.value.status == 422
    assert "field is immutable" in caught.value.body


def test_a_tls_secret_needs_a_certificate_and_a_key(kube_api: FakeKubeAPI) -> None:
    with pytest.raises(ApiException) as caught:
        core(kube_api).create_namespaced_secret(
            "ops", secret("a", type="kubernetes.io/tls", data={"tls.crt": "eA=="})
        )
    assert caught.value.status == 422
    assert "tls.key" in caught.value.body


def test_string_data_is_stored_base64_encoded_in_data(kube_api: FakeKubeAPI) -> None:
    created = core(kube_api).create_namespaced_secret("ops", secret("a", stringData={"user": "me"}))
    assert created.data == {"user": "bWU="}


def test_a_dry_run_create_stores_nothing(kube_api: FakeKubeAPI) -> None:
    core(kube_api).create_namespaced_secret("ops", secret("a"), dry_run="All")
    assert kube_api.get("secrets", "a", "ops") is None


def test_delete_removes_the_object_and_answers_a_success_status(kube_api: FakeKubeAPI) -> None:
    core(kube_api).create_namespaced_secret("ops", secret("a"))
    response = core(kube_api).delete_namespaced_secret("a", "ops", _preload_content=False)
    assert json.loads(response.data)["status"] == "Success"
    assert kube_api.get("secrets", "a", "ops") is None


def test_events_are_created_in_their_namespace(kube_api: FakeKubeAPI) -> None:
    core(kube_api).create_namespaced_event(
        "ops",
        {
            "metadata": {"generateName": "pod."},
            "involvedObject": {"kind": "Pod", "name": "pod", "namespace": "ops"},
            "reason": "Swapped",
            "message": "image swapped",
            "type": "Normal",
        },
    )
    events = core(kube_api).list_namespaced_event("ops").items
    assert [(e.reason, e.metadata.name.startswith("pod.")) for e in events] == [("Swapped", True)]


def test_an_injected_failure_answers_once_then_the_real_thing(kube_api: FakeKubeAPI) -> None:
    core(kube_api).create_namespaced_secret("ops", secret("a"))
    kube_api.fail("GET", "/api/v1/namespaces/ops/secrets/a", 503, "ServiceUnavailable")
    with pytest.raises(ApiException) as caught:
        core(kube_api).read_namespaced_secret("a", "ops")
    assert caught.value.status == 503
    assert core(kube_api).read_namespaced_secret("a", "ops").metadata.name == "a"


def test_a_watch_streams_added_modified_and_deleted_as_they_happen(
    kube_api: FakeKubeAPI,
) -> None:
    api = core(kube_api)
    api.create_namespaced_secret("ops", secret("before", {"app": "swapper"}))
    seen: list[tuple[str, str]] = []
    stream = watch.Watch()

    def consume() -> None:
        for event in stream.stream(
            api.list_namespaced_secret, "ops", label_selector="app=swapper", timeout_seconds=5
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                stream.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    api.create_namespaced_secret("ops", secret("ignored", {"app": "other"}))
    api.create_namespaced_secret("ops", secret("new", {"app": "swapper"}))
    api.patch_namespaced_secret(
        "new", "ops", [{"op": "add", "path": "/metadata/labels/x", "value": "1"}]
    )
    api.delete_namespaced_secret("new", "ops")
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert seen == [
        ("ADDED", "before"),
        ("ADDED", "new"),
        ("MODIFIED", "new"),
        ("DELETED", "new"),
    ]


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
