"""The access check's remembered public answers: in memory, and in a ConfigMap on a real API server.

One contract, run against both implementations: what ``confirmed_at`` says after ``remember``
and ``forget``, the refresh interval, the bound on entries. For the ConfigMap each check is made
twice: at once (the in-memory copy) and once the change is written and the watch has brought
the written object back (so neither the write nor the watch undoes it).

Then the ConfigMap's own behaviour, on the session's kube-apiserver and etcd: loaded at start,
shared through the watch, concurrent writers (a real 409 Conflict, read again and retried),
a missing object, the byte bound, and the chart's own Role (rendered from the chart) allowing
that one ConfigMap and no other.

The audit policy of tests/e2e/cluster.py records Secrets' and pods' writes only, so a 409 is
shown by the instance's ``conflicts`` count (each one an ``ApiException`` with status 409 from
the API server) and by the object the API server holds afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.rendering import render
from e2e.cluster import Cluster
from helpers import Clock

from swapper.access.remembered import MemoryPublicAnswers, PublicAnswers
from swapper.kube.remembered import (
    DATA_KEY,
    ConfigMapPublicAnswers,
    decode,
    encode,
    newer,
)
from swapper.stamps import REFRESH

Namespaces = Callable[[str], str]
NAME = "swapper-source-access"
NGINX = "docker.io/library/nginx"
REDIS = "docker.io/library/redis"


@pytest.fixture
def clock() -> Clock:
    return Clock(1_764_590_000.0)


@pytest.fixture
def core(cluster: Cluster) -> Any:
    from kubernetes import client

    return client.CoreV1Api(cluster.api_client())


def create_config_map(
    core: Any, namespace: str, name: str = NAME, data: dict[str, str] | None = None, **meta: Any
) -> None:
    body: dict[str, Any] = {"metadata": {"name": name, **meta}}
    if data is not None:
        body["data"] = data
    core.create_namespaced_config_map(namespace, body)


def read_config_map(core: Any, namespace: str, name: str = NAME) -> dict[str, Any]:
    return core.read_namespaced_config_map(name, namespace, _preload_content=False).json()  # type: ignore[no-any-return]


def stored_stamps(core: Any, namespace: str, name: str = NAME) -> dict[str, int]:
    return decode((read_config_map(core, namespace, name).get("data") or {}).get(DATA_KEY))


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def watch_thread(store: ConfigMapPublicAnswers) -> threading.Thread:
    """The store's watch thread, once its run() has loaded and started it."""
    await eventually(lambda: store.ready() and store._thread is not None)
    assert store._thread is not None
    return store._thread


@pytest.fixture
async def running() -> AsyncIterator[Callable[[ConfigMapPublicAnswers], Awaitable[None]]]:
    """Runs stores as the app's lifespan does (a task), cancelled at the end of the test."""
    tasks: list[asyncio.Task[None]] = []

    async def start(store: ConfigMapPublicAnswers) -> None:
        tasks.append(asyncio.create_task(store.run()))
        await eventually(store.ready)

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def config_map_store(
    cluster: Cluster, namespace: str, clock: Clock, kubeconfig: Path | None = None, **kw: Any
) -> ConfigMapPublicAnswers:
    kw.setdefault("flush_interval", 0.05)
    return ConfigMapPublicAnswers(
        cluster.api_client(kubeconfig), namespace, kw.pop("name", NAME), clock=clock, **kw
    )


# -- the contract, for both implementations -----------------------------------------------------


@dataclass
class Subject:
    answers: PublicAnswers
    settle: Callable[[], Awaitable[None]]  # the change written and watched back (ConfigMap)

    async def check(self, condition: Callable[[PublicAnswers], bool]) -> None:
        assert condition(self.answers)  # at once: the in-memory copy
        await self.settle()
        assert condition(self.answers)  # written, and the watch has brought it back


async def _nothing() -> None:
    return None


@pytest.fixture(params=["memory", "config-map"])
async def subject(
    request: pytest.FixtureRequest,
    clock: Clock,
    running: Callable[[ConfigMapPublicAnswers], Awaitable[None]],
) -> Subject:
    if request.param == "memory":
        return Subject(MemoryPublicAnswers(3, clock=clock), _nothing)
    cluster: Cluster = request.getfixturevalue("cluster")
    namespace = request.getfixturevalue("namespaces")("contract")
    core = request.getfixturevalue("core")
    create_config_map(core, namespace)
    store = config_map_store(cluster, namespace, clock, max_entries=3)
    await running(store)

    async def settle() -> None:
        assert await store.flush()
        await eventually(lambda: store.stored() == stored_stamps(core, namespace))

    return Subject(store, settle)


async def test_a_repository_never_remembered_is_not_confirmed(subject: Subject) -> None:
    await subject.check(lambda a: a.confirmed_at(NGINX) is None)


async def test_a_remembered_repository_is_confirmed_at_the_time_it_was_remembered(
    subject: Subject, clock: Clock
) -> None:
    subject.answers.remember(NGINX)
    await subject.check(lambda a: a.confirmed_at(NGINX) == clock.now)


async def test_remembering_again_within_the_refresh_interval_keeps_the_first_time(
    subject: Subject, clock: Clock
) -> None:
    first = clock.now
    subject.answers.remember(NGINX)
    clock.now += REFRESH - 1
    subject.answers.remember(NGINX)
    await subject.check(lambda a: a.confirmed_at(NGINX) == first)


async def test_remembering_again_after_the_refresh_interval_renews_the_time(
    subject: Subject, clock: Clock
) -> None:
    subject.answers.remember(NGINX)
    await subject.settle()
    clock.now += REFRESH
    subject.answers.remember(NGINX)
    await subject.check(lambda a: a.confirmed_at(NGINX) == clock.now)


async def test_a_forgotten_repository_is_not_confirmed_any_more(subject: Subject) -> None:
    subject.answers.remember(NGINX)
    subject.answers.remember(REDIS)
    await subject.settle()
    subject.answers.forget(NGINX)
    await subject.check(
        lambda a: a.confirmed_at(NGINX) is None and a.confirmed_at(REDIS) is not None
    )


async def test_a_repository_remembered_after_being_forgotten_is_confirmed_again(
    subject: Subject, clock: Clock
) -> None:
    subject.answers.remember(NGINX)
    await subject.settle()
    clock.now += 5
    subject.answers.forget(NGINX)
    await subject.settle()
    clock.now += 5
    subject.answers.remember(NGINX)
    await subject.check(lambda a: a.confirmed_at(NGINX) == clock.now)


async def test_beyond_max_entries_the_oldest_answers_are_dropped(
    subject: Subject, clock: Clock
) -> None:
    repositories = [f"ghcr.io/acme/app-{i}" for i in range(5)]
    for repository in repositories:  # max_entries is 3
        subject.answers.remember(repository)
        clock.now += 1
    await subject.check(
        lambda a: [r for r in repositories if a.confirmed_at(r) is not None] == repositories[2:]
    )


def test_answers_kept_in_memory_only_are_ready_at_once() -> None:
    assert MemoryPublicAnswers().ready()


# -- the ConfigMap ------------------------------------------------------------------------------


async def test_the_config_map_answers_are_ready_once_the_start_up_load_was_tried(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock
) -> None:
    namespace = namespaces("ready")
    create_config_map(core, namespace)
    store = config_map_store(cluster, namespace, clock)
    assert not store.ready()
    assert await store.load()
    assert store.ready()


async def test_answers_written_by_one_instance_are_loaded_by_an_instance_started_later(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock, running: Any
) -> None:
    namespace = namespaces("load")
    create_config_map(core, namespace)
    first = config_map_store(cluster, namespace, clock)
    await running(first)
    first.remember(NGINX)
    await eventually(lambda: NGINX in stored_stamps(core, namespace))
    later = config_map_store(cluster, namespace, clock)
    assert later.confirmed_at(NGINX) is None
    assert await later.load()
    assert later.confirmed_at(NGINX) == clock.now


async def test_two_running_instances_share_answers_through_the_watch(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock, running: Any
) -> None:
    namespace = namespaces("share")
    create_config_map(core, namespace)
    one, other = (
        config_map_store(cluster, namespace, clock),
        config_map_store(cluster, namespace, clock),
    )
    await running(one)
    await running(other)
    one.remember(NGINX)
    await eventually(lambda: other.confirmed_at(NGINX) == clock.now)
    other.forget(NGINX)
    await eventually(lambda: one.confirmed_at(NGINX) is None)
    assert other.loads == one.loads == 1  # followed by the watch, never listed again


async def test_two_instances_flushing_at_once_keep_both_answers_after_a_conflict(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock
) -> None:
    namespace = namespaces("conflict")
    create_config_map(core, namespace)
    one, other = (
        config_map_store(cluster, namespace, clock),
        config_map_store(cluster, namespace, clock),
    )
    assert await one.load() and await other.load()  # both hold the same resourceVersion
    one.remember(NGINX)
    other.remember(REDIS)
    assert await asyncio.gather(one.flush(), other.flush()) == [True, True]
    assert one.conflicts + other.conflicts == 1  # the second PUT met a 409, read, retried
    assert one.writes + other.writes == 2
    assert stored_stamps(core, namespace) == {NGINX: int(clock.now), REDIS: int(clock.now)}


async def test_a_forget_and_another_instances_answer_are_both_kept_after_a_conflict(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock
) -> None:
    namespace = namespaces("merge")
    earlier = int(clock.now) - 60
    create_config_map(core, namespace, data={DATA_KEY: encode({NGINX: earlier, REDIS: earlier})})
    one, other = (
        config_map_store(cluster, namespace, clock),
        config_map_store(cluster, namespace, clock),
    )
    assert await one.load() and await other.load()
    one.forget(NGINX)
    other.remember("quay.io/acme/tool")
    assert await other.flush()
    assert await one.flush()  # from the version before other's write
    assert one.conflicts == 1
    assert stored_stamps(core, namespace) == {REDIS: earlier, "quay.io/acme/tool": int(clock.now)}


async def test_a_hot_repository_is_written_once_per_refresh_interval(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock
) -> None:
    namespace = namespaces("hot")
    create_config_map(core, namespace)
    store = config_map_store(cluster, namespace, clock)
    assert await store.load()
    for _ in range(20):
        store.remember(NGINX)
        clock.now += 10
        assert await store.flush()
    assert store.writes == 1
    clock.now += REFRESH
    store.remember(NGINX)
    assert await store.flush()
    assert store.writes == 2
    assert stored_stamps(core, namespace) == {NGINX: int(clock.now)}


async def test_the_stored_answers_stay_within_the_byte_bound_dropping_the_oldest(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock
) -> None:
    namespace = namespaces("bytes")
    create_config_map(core, namespace)
    store = config_map_store(cluster, namespace, clock, max_bytes=300)
    assert await store.load()
    repositories = [f"registry.example.org/team/application-{i:02d}" for i in range(20)]
    for repository in repositories:
        store.remember(repository)
        clock.now += 1
    assert await store.flush()
    text = read_config_map(core, namespace)["data"][DATA_KEY]
    kept = decode(text)
    assert len(text.encode()) <= 300
    assert 0 < len(kept) < len(repositories)
    assert sorted(kept) == repositories[-len(kept) :]  # the newest
    assert store.confirmed_at(repositories[0]) is None  # and the copy agrees


async def test_a_write_keeps_the_labels_and_annotations_helm_put_on_the_config_map(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock
) -> None:
    namespace = namespaces("helm")
    labels = {"app.kubernetes.io/managed-by": "Helm"}
    annotations = {"meta.helm.sh/release-name": "swapper"}
    create_config_map(core, namespace, labels=labels, annotations=annotations)
    store = config_map_store(cluster, namespace, clock)
    assert await store.load()
    store.remember(NGINX)
    assert await store.flush()
    meta = read_config_map(core, namespace)["metadata"]
    assert (meta["labels"], meta["annotations"]) == (labels, annotations)


async def test_a_missing_config_map_logs_one_warning_and_keeps_answers_in_memory(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock, running: Any
) -> None:
    from kubernetes.client.exceptions import ApiException

    namespace = namespaces("missing")
    store = config_map_store(cluster, namespace, clock)
    await running(store)
    assert store.ready() and not store.loaded
    store.remember(NGINX)
    for _ in range(5):
        assert not await store.flush()
    await asyncio.sleep(0.3)  # several flush intervals of the running task too
    assert store.confirmed_at(NGINX) == clock.now
    assert store.warnings == ["remembered_answers_missing"]
    with pytest.raises(ApiException) as missing:
        read_config_map(core, namespace)  # never created by swapper
    assert missing.value.status == 404


async def test_a_config_map_created_later_receives_the_answers_kept_in_memory(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock, running: Any
) -> None:
    namespace = namespaces("later")
    store = config_map_store(cluster, namespace, clock)
    await running(store)
    store.remember(NGINX)
    create_config_map(core, namespace)
    await eventually(lambda: stored_stamps(core, namespace) == {NGINX: int(clock.now)})
    assert store.loaded


async def test_unreadable_data_logs_a_warning_and_is_replaced_by_the_next_write(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock
) -> None:
    namespace = namespaces("unreadable")
    create_config_map(core, namespace, data={DATA_KEY: "{not json", "other": "kept"})
    store = config_map_store(cluster, namespace, clock)
    assert await store.load()
    assert store.warnings == ["remembered_answers_unreadable"]
    store.remember(NGINX)
    assert await store.flush()
    data = read_config_map(core, namespace)["data"]
    assert (decode(data[DATA_KEY]), data["other"]) == ({NGINX: int(clock.now)}, "kept")


async def test_cancelling_the_task_writes_what_is_queued_and_ends_the_watch_thread(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock
) -> None:
    namespace = namespaces("stop")
    create_config_map(core, namespace)
    store = config_map_store(cluster, namespace, clock, flush_interval=3600)
    task = asyncio.create_task(store.run())
    thread = await watch_thread(store)
    store.remember(NGINX)
    began = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert time.monotonic() - began < 5
    assert not thread.is_alive()
    assert stored_stamps(core, namespace) == {NGINX: int(clock.now)}


async def test_cancelling_at_once_after_the_start_ends_the_watch_thread(
    cluster: Cluster, core: Any, namespaces: Namespaces, clock: Clock
) -> None:
    namespace = namespaces("quick")
    create_config_map(core, namespace)
    for _ in range(3):
        store = config_map_store(cluster, namespace, clock)
        task = asyncio.create_task(store.run())
        thread = await watch_thread(store)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not thread.is_alive()


# -- as the chart's ServiceAccount, with the chart's Role ---------------------------------------


@pytest.fixture
def chart_account(cluster: Cluster, namespaces: Namespaces, tmp_path: Path) -> Iterator[Any]:
    """The chart's webhook ServiceAccount, Role, RoleBinding and source-access ConfigMap, as
    rendered, created in a namespace of this test; yields (namespace, kubeconfig, name)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    namespace = namespaces("chart")
    rendered = render(namespace=namespace)
    name = rendered.config["source"]["access"]["configMap"]
    wanted = {("ServiceAccount", rendered.pod["serviceAccountName"]), ("ConfigMap", name)}
    wanted |= {("Role", "swapper"), ("RoleBinding", "swapper")}
    for obj in rendered.release_objects():
        if (obj["kind"], obj["metadata"]["name"]) in wanted:
            cluster.kubectl("create", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(obj))
    kubeconfig = cluster.service_account_kubeconfig(
        namespace, rendered.pod["serviceAccountName"], tmp_path / "webhook.kubeconfig"
    )
    core = client.CoreV1Api(cluster.api_client(kubeconfig))
    deadline = time.monotonic() + 15
    while True:  # until the API server's authorizer has the new Role
        try:
            core.read_namespaced_config_map(name, namespace)
            break
        except ApiException as exc:
            if exc.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield namespace, kubeconfig, name


async def test_the_charts_service_account_may_load_follow_and_write_its_config_map(
    cluster: Cluster, core: Any, chart_account: Any, clock: Clock, running: Any
) -> None:
    namespace, kubeconfig, name = chart_account
    one = config_map_store(cluster, namespace, clock, kubeconfig, name=name)
    other = config_map_store(cluster, namespace, clock, kubeconfig, name=name)
    await running(one)
    await running(other)
    one.remember(NGINX)
    await eventually(lambda: other.confirmed_at(NGINX) == clock.now)  # list, watch, update
    assert stored_stamps(core, namespace, name) == {NGINX: int(clock.now)}
    assert one.warnings == other.warnings == []


async def test_the_charts_service_account_may_not_read_or_write_another_config_map(
    cluster: Cluster, core: Any, chart_account: Any, clock: Clock
) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    namespace, kubeconfig, _ = chart_account
    data = {DATA_KEY: encode({NGINX: 1})}
    create_config_map(core, namespace, "app-settings", data=data)
    store = config_map_store(cluster, namespace, clock, kubeconfig, name="app-settings")
    assert not await store.load()
    assert store.ready() and store.confirmed_at(NGINX) is None
    store.remember(REDIS)
    assert not await store.flush()
    assert store.confirmed_at(REDIS) == clock.now  # kept in memory
    assert read_config_map(core, namespace, "app-settings")["data"] == data
    as_webhook = client.CoreV1Api(cluster.api_client(kubeconfig))
    for call in (
        lambda: as_webhook.read_namespaced_config_map("app-settings", namespace),
        lambda: as_webhook.list_namespaced_config_map(namespace),
        lambda: as_webhook.replace_namespaced_config_map(
            "app-settings", namespace, {"metadata": {"name": "app-settings"}}
        ),
    ):
        with pytest.raises(ApiException) as refused:
            call()
        assert refused.value.status == 403


async def test_a_forbidden_config_map_logs_one_warning_however_often_it_is_retried(
    cluster: Cluster, core: Any, chart_account: Any, clock: Clock, running: Any
) -> None:
    namespace, kubeconfig, _ = chart_account
    create_config_map(core, namespace, "app-settings")
    store = config_map_store(
        cluster, namespace, clock, kubeconfig, name="app-settings", max_backoff=0.05
    )
    await running(store)
    await eventually(lambda: store.failures >= 3)  # the watch thread lists again and again
    assert store.warnings == ["remembered_answers_read"]


@pytest.mark.parametrize("apply", [["--server-side", "--field-manager=helm"], []])
async def test_applying_the_charts_config_map_again_keeps_the_answers_swapper_wrote(
    cluster: Cluster,
    core: Any,
    namespaces: Namespaces,
    clock: Clock,
    apply: list[str],
) -> None:
    """What ``helm upgrade`` does to it: an apply of the chart's object, which has no data
    (server-side, as Helm 4 applies; or a client-side three-way merge, as Helm 3 patches)."""
    namespace = namespaces("upgrade")
    config_map = render(namespace=namespace).access_config_map
    cluster.kubectl("apply", *apply, "-f", "-", stdin=yaml.safe_dump(config_map))
    store = config_map_store(cluster, namespace, clock)
    assert await store.load()
    store.remember(NGINX)
    assert await store.flush()
    config_map["metadata"]["labels"]["helm.sh/chart"] = "swapper-9.9.9"  # the next version
    cluster.kubectl("apply", *apply, "-f", "-", stdin=yaml.safe_dump(config_map))
    upgraded = read_config_map(core, namespace)
    assert upgraded["metadata"]["labels"]["helm.sh/chart"] == "swapper-9.9.9"
    assert decode(upgraded["data"][DATA_KEY]) == {NGINX: int(clock.now)}


# -- pure helpers ------------------------------------------------------------------------------


def test_resource_versions_compare_as_integers_and_otherwise_the_newer_arrival_wins() -> None:
    assert newer("10", "9") and not newer("9", "10") and not newer("10", "10")
    assert newer("abc", "10") and newer("10", "") and not newer("abc", "abc")


def test_entries_that_are_not_a_repository_and_a_time_are_skipped() -> None:
    text = json.dumps({NGINX: 5, "": 1, REDIS: "soon", "quay.io/a": -1, "quay.io/b": True})
    assert decode(text) == {NGINX: 5}
