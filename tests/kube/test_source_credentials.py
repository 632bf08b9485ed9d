"""Pull-secret credentials per pod, from informers that follow the (fake) API server."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator

import pytest
from kube_fake import FakeKubeAPI

from swapper.kube.keyring import DOCKER_CFG, DOCKER_CONFIG_JSON
from swapper.kube.source_credentials import SourceCredentials


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def pull_secret(namespace: str, name: str, registry: str, user: str) -> dict[str, object]:
    auths = {registry: {"username": user, "password": f"{user}-pw"}}
    return {
        "metadata": {"namespace": namespace, "name": name},
        "type": DOCKER_CONFIG_JSON,
        "data": {".dockerconfigjson": _b64(json.dumps({"auths": auths}))},
    }


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def credentials(kube_api: FakeKubeAPI) -> Iterator[SourceCredentials]:
    store = SourceCredentials(kube_api.api_client(), watch_timeout=1)
    yield store
    store.stop()


def started(store: SourceCredentials) -> None:
    store.start()
    eventually(lambda: store.synced)


def users(store: SourceCredentials, namespace: str, secrets: list[str], image: str) -> list[str]:
    return [a.username for a in store.keyring(namespace, secrets).lookup(image)]


def test_pod_secrets_that_exist_at_start_are_found(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    kube_api.put("secrets", pull_secret("team", "ghcr", "ghcr.io", "robot"))
    started(credentials)
    assert users(credentials, "team", ["ghcr"], "ghcr.io/acme/app") == ["robot"]


def test_a_secret_created_later_is_followed_by_the_watch(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    started(credentials)
    kube_api.put("secrets", pull_secret("team", "ghcr", "ghcr.io", "robot"))
    eventually(lambda: users(credentials, "team", ["ghcr"], "ghcr.io/acme/app") == ["robot"])


def test_a_changed_secret_replaces_its_credentials(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    kube_api.put("secrets", pull_secret("team", "ghcr", "ghcr.io", "old"))
    started(credentials)
    kube_api.put("secrets", pull_secret("team", "ghcr", "ghcr.io", "new"))
    eventually(lambda: users(credentials, "team", ["ghcr"], "ghcr.io/acme/app") == ["new"])


def test_a_deleted_secret_gives_no_credentials(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    kube_api.put("secrets", pull_secret("team", "ghcr", "ghcr.io", "robot"))
    started(credentials)
    client = kube_api.api_client()
    from kubernetes import client as k8s

    k8s.CoreV1Api(client).delete_namespaced_secret("ghcr", "team")
    eventually(lambda: users(credentials, "team", ["ghcr"], "ghcr.io/acme/app") == [])


def test_secrets_of_another_namespace_are_not_used(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    kube_api.put("secrets", pull_secret("other", "ghcr", "ghcr.io", "robot"))
    started(credentials)
    assert users(credentials, "team", ["ghcr"], "ghcr.io/acme/app") == []


def test_the_service_accounts_secrets_are_used_when_the_pod_names_none(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    kube_api.put("secrets", pull_secret("team", "sa-ghcr", "ghcr.io", "sa-robot"))
    kube_api.put(
        "serviceaccounts",
        {
            "metadata": {"namespace": "team", "name": "builder"},
            "imagePullSecrets": [{"name": "sa-ghcr"}],
        },
    )
    started(credentials)
    ring = credentials.keyring("team", [], "builder")
    assert [a.username for a in ring.lookup("ghcr.io/acme/app")] == ["sa-robot"]


def test_the_service_accounts_secrets_are_not_added_to_a_pods_own(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    kube_api.put("secrets", pull_secret("team", "sa-ghcr", "ghcr.io", "sa-robot"))
    kube_api.put("secrets", pull_secret("team", "own", "quay.io", "own-robot"))
    kube_api.put(
        "serviceaccounts",
        {
            "metadata": {"namespace": "team", "name": "default"},
            "imagePullSecrets": [{"name": "sa-ghcr"}],
        },
    )
    started(credentials)
    assert credentials.keyring("team", ["own"]).lookup("ghcr.io/acme/app") == []


def test_legacy_dockercfg_secrets_are_followed_too(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    kube_api.put(
        "secrets",
        {
            "metadata": {"namespace": "team", "name": "old"},
            "type": DOCKER_CFG,
            "data": {".dockercfg": _b64(json.dumps({"quay.io": {"auth": _b64("legacy:pw")}}))},
        },
    )
    started(credentials)
    assert users(credentials, "team", ["old"], "quay.io/acme/app") == ["legacy"]


def test_only_pull_secrets_are_transferred_from_the_api_server(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    kube_api.put(
        "secrets",
        {
            "metadata": {"namespace": "team", "name": "db"},
            "type": "Opaque",
            "data": {"pw": _b64("x")},
        },
    )
    started(credentials)
    secret_reads = [r for r in kube_api.requests if r.path == "/api/v1/secrets"]
    assert secret_reads
    assert all(
        r.query.get("fieldSelector", "").startswith("type=kubernetes.io/") for r in secret_reads
    )
    assert all(("team", "db") not in informer.items for informer in credentials.secrets)


def test_an_unreadable_secret_contributes_nothing_and_others_still_work(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    broken = pull_secret("team", "broken", "ghcr.io", "x")
    broken["data"] = {".dockerconfigjson": _b64("not json")}
    kube_api.put("secrets", broken)
    kube_api.put("secrets", pull_secret("team", "good", "ghcr.io", "robot"))
    started(credentials)
    assert users(credentials, "team", ["broken", "good"], "ghcr.io/acme/app") == ["robot"]


def test_an_expired_watch_lists_again_and_keeps_following(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    started(credentials)
    listed = sum(i.lists for i in credentials.secrets)
    # Both secret informers use this path: whichever asks first gets the 410.
    kube_api.fail("GET", "/api/v1/secrets", 410, "Expired")
    eventually(lambda: sum(i.lists for i in credentials.secrets) > listed, timeout=10)
    kube_api.put("secrets", pull_secret("team", "ghcr", "ghcr.io", "after"))
    eventually(lambda: users(credentials, "team", ["ghcr"], "ghcr.io/acme/app") == ["after"])


def test_an_api_server_error_at_start_is_retried(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    kube_api.put("secrets", pull_secret("team", "ghcr", "ghcr.io", "robot"))
    kube_api.fail("GET", "/api/v1/secrets", 500, "InternalError")
    credentials.start()
    eventually(lambda: credentials.synced, timeout=10)
    eventually(lambda: users(credentials, "team", ["ghcr"], "ghcr.io/acme/app") == ["robot"])


def test_stopping_ends_the_informer_threads(
    kube_api: FakeKubeAPI, credentials: SourceCredentials
) -> None:
    started(credentials)
    threads = list(credentials._threads)
    began = time.monotonic()
    credentials.stop()
    assert not any(t.is_alive() for t in threads)
    assert time.monotonic() - began < 5


def test_nothing_is_known_before_the_first_list(credentials: SourceCredentials) -> None:
    assert not credentials.synced
    assert credentials.keyring("team", ["ghcr"]).lookup("ghcr.io/acme/app") == []
