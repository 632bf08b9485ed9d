"""Pull-secret credentials per pod, from informers that follow the real API server.

Every namespace is the test's own, but the informers follow the whole (shared) cluster, as
swapper's do. One test runs on the fake (tests/kube_fake.py): a 500 answered to the first list,
which a real API server cannot be made to answer at a chosen moment. The informer's relist
after a 410 Gone is tested on the real server, after an etcd compaction, in
tests/e2e/test_informer.py.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2e.cluster import Cluster
from kube_fake import FakeKubeAPI

from swapper.access.keyring import DOCKER_CFG, DOCKER_CONFIG_JSON, PULL_SECRET_TYPES
from swapper.access.source_credentials import SourceCredentials

Namespaces = Callable[[str], str]


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def pull_secret(namespace: str, name: str, registry: str, user: str) -> dict[str, Any]:
    auths = {registry: {"username": user, "password": f"{user}-pw"}}
    return {
        "metadata": {"namespace": namespace, "name": name},
        "type": DOCKER_CONFIG_JSON,
        "data": {".dockerconfigjson": _b64(json.dumps({"auths": auths}))},
    }


def legacy_pull_secret(namespace: str, name: str, registry: str, user: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "type": DOCKER_CFG,
        "data": {".dockercfg": _b64(json.dumps({registry: {"auth": _b64(f"{user}:pw")}}))},
    }


def opaque_secret(namespace: str, name: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "type": "Opaque",
        "data": {"pw": _b64("x")},
    }


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def core(cluster: Cluster) -> Any:
    from kubernetes import client

    return client.CoreV1Api(cluster.api_client())


@pytest.fixture
def credentials(cluster: Cluster) -> Iterator[SourceCredentials]:
    store = SourceCredentials(cluster.api_client(), watch_timeout=1)
    yield store
    store.stop()


def started(store: SourceCredentials) -> None:
    store.start()
    eventually(lambda: store.synced)


def users(store: SourceCredentials, namespace: str, secrets: list[str], image: str) -> list[str]:
    return [a.username for a in store.keyring(namespace, secrets).lookup(image)]


def test_pod_secrets_that_exist_at_start_are_found(
    core: Any, namespaces: Namespaces, credentials: SourceCredentials
) -> None:
    team = namespaces("team")
    core.create_namespaced_secret(team, pull_secret(team, "ghcr", "ghcr.io", "robot"))
    started(credentials)
    assert users(credentials, team, ["ghcr"], "ghcr.io/acme/app") == ["robot"]


def test_a_secret_created_later_is_followed_by_the_watch(
    core: Any, namespaces: Namespaces, credentials: SourceCredentials
) -> None:
    team = namespaces("team")
    started(credentials)
    core.create_namespaced_secret(team, pull_secret(team, "ghcr", "ghcr.io", "robot"))
    eventually(lambda: users(credentials, team, ["ghcr"], "ghcr.io/acme/app") == ["robot"])


def test_a_changed_secret_replaces_its_credentials(
    core: Any, namespaces: Namespaces, credentials: SourceCredentials
) -> None:
    team = namespaces("team")
    core.create_namespaced_secret(team, pull_secret(team, "ghcr", "ghcr.io", "old"))
    started(credentials)
    core.replace_namespaced_secret("ghcr", team, pull_secret(team, "ghcr", "ghcr.io", "new"))
    eventually(lambda: users(credentials, team, ["ghcr"], "ghcr.io/acme/app") == ["new"])


def test_a_deleted_secret_gives_no_credentials(
    core: Any, namespaces: Namespaces, credentials: SourceCredentials
) -> None:
    team = namespaces("team")
    core.create_namespaced_secret(team, pull_secret(team, "ghcr", "ghcr.io", "robot"))
    started(credentials)
    assert users(credentials, team, ["ghcr"], "ghcr.io/acme/app") == ["robot"]
    core.delete_namespaced_secret("ghcr", team)
    eventually(lambda: users(credentials, team, ["ghcr"], "ghcr.io/acme/app") == [])


def test_secrets_of_another_namespace_are_not_used(
    core: Any, namespaces: Namespaces, credentials: SourceCredentials
) -> None:
    team, other = namespaces("team"), namespaces("other")
    core.create_namespaced_secret(other, pull_secret(other, "ghcr", "ghcr.io", "robot"))
    started(credentials)
    assert users(credentials, other, ["ghcr"], "ghcr.io/acme/app") == ["robot"]  # it is known
    assert users(credentials, team, ["ghcr"], "ghcr.io/acme/app") == []


def test_the_service_accounts_secrets_are_used_when_the_pod_names_none(
    core: Any, namespaces: Namespaces, credentials: SourceCredentials
) -> None:
    team = namespaces("team")
    core.create_namespaced_secret(team, pull_secret(team, "sa-ghcr", "ghcr.io", "sa-robot"))
    core.create_namespaced_service_account(
        team, {"metadata": {"name": "builder"}, "imagePullSecrets": [{"name": "sa-ghcr"}]}
    )
    started(credentials)
    ring = credentials.keyring(team, [], "builder")
    assert [a.username for a in ring.lookup("ghcr.io/acme/app")] == ["sa-robot"]


def test_the_service_accounts_secrets_are_not_added_to_a_pods_own(
    core: Any, namespaces: Namespaces, credentials: SourceCredentials
) -> None:
    team = namespaces("team")
    core.create_namespaced_secret(team, pull_secret(team, "sa-ghcr", "ghcr.io", "sa-robot"))
    core.create_namespaced_secret(team, pull_secret(team, "own", "quay.io", "own-robot"))
    core.patch_namespaced_service_account(
        "default", team, {"imagePullSecrets": [{"name": "sa-ghcr"}]}
    )
    started(credentials)
    assert users(credentials, team, [], "ghcr.io/acme/app") == ["sa-robot"]  # the pod names none
    assert credentials.keyring(team, ["own"]).lookup("ghcr.io/acme/app") == []


def test_legacy_dockercfg_secrets_are_followed_too(
    core: Any, namespaces: Namespaces, credentials: SourceCredentials
) -> None:
    team = namespaces("team")
    core.create_namespaced_secret(team, legacy_pull_secret(team, "old", "quay.io", "legacy"))
    started(credentials)
    assert users(credentials, team, ["old"], "quay.io/acme/app") == ["legacy"]


def test_only_pull_secrets_are_transferred_from_the_api_server(
    core: Any, namespaces: Namespaces, credentials: SourceCredentials
) -> None:
    team = namespaces("team")
    received: list[str] = []  # the type of every Secret the API server sent, listed or watched
    for informer in credentials.secrets:
        keep = informer.transform

        def record(obj: dict[str, Any], keep: Any = keep) -> Any:
            received.append(str(obj.get("type")))
            return keep(obj)

        informer.transform = record
    core.create_namespaced_secret(team, opaque_secret(team, "db"))
    started(credentials)
    core.create_namespaced_secret(team, opaque_secret(team, "db-later"))
    core.create_namespaced_secret(team, pull_secret(team, "last", "ghcr.io", "robot"))
    core.create_namespaced_secret(team, legacy_pull_secret(team, "last-legacy", "quay.io", "l"))
    eventually(  # both watches got past the Opaque Secret created after the list
        lambda: (
            (team, "last") in credentials.secrets[0].items
            and (team, "last-legacy") in credentials.secrets[1].items
        )
    )
    assert received
    assert set(received) <= set(PULL_SECRET_TYPES)
    assert all((team, "db") not in informer.items for informer in credentials.secrets)


def test_an_unreadable_secret_contributes_nothing_and_others_still_work(
    core: Any, namespaces: Namespaces, credentials: SourceCredentials
) -> None:
    team = namespaces("team")
    # The API server only checks that .dockerconfigjson is a JSON object; this one's ``auth``
    # is not base64, so swapper cannot read it.
    broken = pull_secret(team, "broken", "ghcr.io", "x")
    broken["data"] = {".dockerconfigjson": _b64('{"auths": {"ghcr.io": {"auth": "%%%"}}}')}
    core.create_namespaced_secret(team, broken)
    core.create_namespaced_secret(team, pull_secret(team, "good", "ghcr.io", "robot"))
    started(credentials)
    assert users(credentials, team, ["broken", "good"], "ghcr.io/acme/app") == ["robot"]


def test_stopping_ends_the_informer_threads(credentials: SourceCredentials) -> None:
    started(credentials)
    threads = list(credentials._threads)
    began = time.monotonic()
    credentials.stop()
    assert not any(t.is_alive() for t in threads)
    assert time.monotonic() - began < 5


def test_stopping_is_not_counted_or_logged_as_a_failure(
    credentials: SourceCredentials, capsys: pytest.CaptureFixture[str]
) -> None:
    started(credentials)
    credentials.stop()
    informers = [*credentials.secrets, credentials.service_accounts]
    assert [i.failures for i in informers] == [0] * len(informers)
    assert "informer_failed" not in capsys.readouterr().err


def test_nothing_is_known_before_the_first_list(credentials: SourceCredentials) -> None:
    assert not credentials.synced
    assert credentials.keyring("team", ["ghcr"]).lookup("ghcr.io/acme/app") == []


# -- on the fake: an injected fault -------------------------------------------------------------


def test_an_api_server_error_at_start_is_retried(kube_api: FakeKubeAPI) -> None:
    kube_api.put("secrets", pull_secret("team", "ghcr", "ghcr.io", "robot"))
    # Both secret informers list this path: whichever asks first gets the 500.
    kube_api.fail("GET", "/api/v1/secrets", 500, "InternalError")
    store = SourceCredentials(kube_api.api_client(), watch_timeout=1)
    try:
        store.start()
        eventually(lambda: store.synced, timeout=10)
        eventually(lambda: users(store, "team", ["ghcr"], "ghcr.io/acme/app") == ["robot"])
        assert sum(i.failures for i in store.secrets) == 1
    finally:
        store.stop()
