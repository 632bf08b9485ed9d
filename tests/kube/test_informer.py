"""The informer's list, watch and recovery (swapper/kube/informer.py) on the real API server.

The session's API server has no watch cache, so lists and watches are served by etcd: pages are
real ``limit``/``continue`` pages of one etcd snapshot, and compacting etcd (``compact_etcd``)
makes both a continue token and a watch from an older resourceVersion expire, as in a cluster
whose client fell behind. For an expired watch the real server answers HTTP 200 and then an
``ERROR`` event with code 410 in the stream (v1.29 and v1.37 alike). A 410 as the watch
request's own HTTP status is what no real server here can be made to answer: that one test runs
on the fake (tests/kube_fake.py), which answers an injected status. A dropped connection is
real: the informer talks to the API server through a TCP proxy that the test cuts.

Each informer here watches one namespace of the test's own (a ``metadata.namespace`` field
selector), so the pages and events it sees are the test's alone.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from e2e.cluster import Cluster
from kube_fake import FakeKubeAPI

from swapper.kube import status_of
from swapper.kube.informer import Informer

Namespaces = Callable[[str], str]
Start = Callable[[Informer[Any]], Informer[Any]]


def _wait(predicate: Callable[[], bool], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class Call:
    kind: str  # "list" or "watch"
    args: dict[str, Any]
    status: int | None = None  # the HTTP status answered (an error's too)
    meta: dict[str, Any] = field(default_factory=dict)  # a list page's metadata
    items: int = 0  # a list page's objects


class Recorder:
    """Wraps a client's ``list_*`` method: records every call and its answer, and runs a test's
    hooks (in the informer's thread) just before requests are sent: ``before`` the n-th list
    or watch, and ``every`` call."""

    def __init__(self, list_all: Callable[..., Any]) -> None:
        self.list_all = list_all
        self.calls: list[Call] = []
        self._hooks: dict[tuple[str, int], Callable[[], None]] = {}
        self.every: Callable[[Call], None] = lambda call: None

    def before(self, kind: str, n: int, hook: Callable[[], None]) -> None:
        self._hooks[(kind, n)] = hook

    def of(self, kind: str) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]

    def __call__(self, **kwargs: Any) -> Any:
        call = Call("watch" if kwargs.get("watch") else "list", kwargs)
        self.calls.append(call)
        hook = self._hooks.pop((call.kind, len(self.of(call.kind))), None)
        if hook is not None:
            hook()
        self.every(call)
        try:
            response = self.list_all(**kwargs)
        except Exception as exc:
            call.status = status_of(exc)
            raise
        call.status = response.status
        if call.kind == "list":
            page = json.loads(response.data)  # read again by the informer (urllib3 keeps it)
            call.meta, call.items = page.get("metadata") or {}, len(page.get("items") or [])
        return response


class CuttableProxy:
    """Forwards TCP from ``127.0.0.1:<port>`` to ``upstream`` (TLS passes through untouched).
    :meth:`cut` drops every open connection, as a network failure would; new connections are
    forwarded again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self._open: list[socket.socket] = []
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                downstream, _ = self._listener.accept()
            except TimeoutError:
                continue
            downstream.settimeout(None)
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self.connections += 1
                self._open += [downstream, upstream]
                self._sockets += [downstream, upstream]
                for source, sink in ((downstream, upstream), (upstream, downstream)):
                    pump = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                    pump.start()
                    self._threads.append(pump)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self._lock:
            cut, self._open = self._open, []
        for sock in cut:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopping.set()
        self._acceptor.join(5)
        self._listener.close()
        self.cut()
        for thread in self._threads:
            thread.join(5)
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def start() -> Iterator[Start]:
    """Runs informers in threads, as swapper does; stops and joins them after the test."""
    stop = threading.Event()
    running: list[tuple[Informer[Any], threading.Thread]] = []

    def begin(informer: Informer[Any]) -> Informer[Any]:
        thread = threading.Thread(target=informer.run, args=(stop,), daemon=True)
        thread.start()
        running.append((informer, thread))
        assert informer.synced.wait(15)
        return informer

    yield begin
    stop.set()
    for informer, thread in running:
        informer.interrupt()
        thread.join(10)
        assert not thread.is_alive()


@pytest.fixture
def admin(cluster: Cluster) -> Iterator[Any]:
    from kubernetes import client

    api = cluster.api_client()
    yield client.CoreV1Api(api)
    api.close()


@pytest.fixture
def proxied(cluster: Cluster) -> Iterator[tuple[CuttableProxy, Any]]:
    """A proxy to the API server, and an admin client that goes through it. (Ask for it before
    ``start``: informers are stopped first, then the proxy.)"""
    url = urlsplit(cluster.url)
    proxy = CuttableProxy((str(url.hostname), int(url.port or 443)))
    api = cluster.api_client()
    api.configuration.host = f"https://127.0.0.1:{proxy.port}"
    yield proxy, api
    api.close()
    proxy.stop()


def _secret(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "type": "Opaque", "data": {"v": "MQ=="}}


def _informer(
    recorder: Recorder, namespace: str, *, watch_timeout: int = 1, **kwargs: Any
) -> Informer[Any]:
    return Informer(
        "secrets",
        recorder,
        lambda obj: obj["metadata"]["resourceVersion"],
        field_selector=f"metadata.namespace={namespace}",
        watch_timeout=watch_timeout,
        **kwargs,
    )


def _names(informer: Informer[Any]) -> list[str]:
    return sorted(name for _, name in informer.items)


# -- the list: pages -------------------------------------------------------------------------


def test_lists_are_asked_for_in_pages_of_500_by_default(admin: Any, namespaces: Namespaces) -> None:
    recorder = Recorder(admin.list_secret_for_all_namespaces)
    _informer(recorder, namespaces("default-page")).list()
    assert [c.args["limit"] for c in recorder.of("list")] == [500]


def test_a_list_over_several_pages_follows_continue_and_gets_every_object(
    admin: Any, namespaces: Namespaces
) -> None:
    namespace = namespaces("pages")
    for name in "abcde":
        admin.create_namespaced_secret(namespace, _secret(name))
    recorder = Recorder(admin.list_secret_for_all_namespaces)
    informer = _informer(recorder, namespace, page_size=2)
    version = informer.list()
    pages = recorder.of("list")
    assert len(pages) >= 3  # how many exactly is etcd's business (it may return short pages)
    assert all(c.args["limit"] == 2 and c.items <= 2 for c in pages)
    assert "_continue" not in pages[0].args
    assert [c.args["_continue"] for c in pages[1:]] == [c.meta["continue"] for c in pages[:-1]]
    assert not pages[-1].meta.get("continue")
    assert _names(informer) == ["a", "b", "c", "d", "e"]
    assert informer.lists == 1
    # All pages are one snapshot, at the first page's resourceVersion: the watch starts there.
    assert {c.meta["resourceVersion"] for c in pages} == {version}


def test_a_relist_keeps_the_whole_old_cache_until_its_last_page_is_in(
    admin: Any, namespaces: Namespaces
) -> None:
    namespace = namespaces("whole")
    for name in "abcde":
        admin.create_namespaced_secret(namespace, _secret(name))
    recorder = Recorder(admin.list_secret_for_all_namespaces)
    informer = _informer(recorder, namespace, page_size=2)
    informer.list()
    admin.delete_namespaced_secret("a", namespace)
    seen: list[list[str]] = []  # what the cache held before each continued page

    def before_every_page(call: Call) -> None:
        if "_continue" in call.args:
            seen.append(_names(informer))

    recorder.every = before_every_page
    informer.list()
    assert len(seen) >= 2
    assert seen == [["a", "b", "c", "d", "e"]] * len(seen)
    assert _names(informer) == ["b", "c", "d", "e"]


def test_a_continue_token_that_expires_mid_list_starts_the_list_over(
    cluster: Cluster, admin: Any, namespaces: Namespaces
) -> None:
    namespace = namespaces("restart")
    for name in "abcde":
        admin.create_namespaced_secret(namespace, _secret(name))
    recorder = Recorder(admin.list_secret_for_all_namespaces)

    def move_on_and_compact() -> None:  # two writes: the first page's snapshot is history
        admin.create_namespaced_secret(namespace, _secret("f"))
        admin.delete_namespaced_secret("a", namespace)
        cluster.compact_etcd()

    recorder.before("list", 2, move_on_and_compact)
    informer = _informer(recorder, namespace, page_size=2)
    informer.list()
    pages = recorder.of("list")
    assert pages[1].status == 410  # the continued page, read after the compaction
    assert "_continue" not in pages[2].args  # ... so the list began again from its start
    assert informer.restarts == 1
    assert informer.lists == 1
    assert _names(informer) == ["b", "c", "d", "e", "f"]  # one snapshot: the new one, whole


# -- the watch: 410 Gone and dropped connections -----------------------------------------------


def test_an_error_event_with_code_410_in_the_watch_stream_relists_at_once(
    cluster: Cluster, admin: Any, namespaces: Namespaces, start: Start
) -> None:
    namespace = namespaces("gone-event")
    admin.create_namespaced_secret(namespace, _secret("keep"))
    admin.create_namespaced_secret(namespace, _secret("remove"))
    recorder = Recorder(admin.list_secret_for_all_namespaces)

    def move_on_and_compact() -> None:  # two writes after the list, then compacted away
        admin.create_namespaced_secret(namespace, _secret("added"))
        admin.delete_namespaced_secret("remove", namespace)
        cluster.compact_etcd()

    recorder.before("watch", 2, move_on_and_compact)  # the first watch ends after 1 s
    informer = start(_informer(recorder, namespace))
    assert _wait(lambda: informer.lists == 2)
    assert recorder.of("watch")[1].status == 200  # the 410 came in the stream, not as status
    assert (informer.expired, informer.failures) == (1, 0)  # a relist at once, not a backoff
    assert _names(informer) == ["added", "keep"]


def test_an_http_410_answer_to_the_watch_request_relists_at_once(
    kube_api: FakeKubeAPI, start: Start
) -> None:
    from kubernetes import client

    kube_api.put("secrets", {"metadata": {"name": "keep", "namespace": "team"}, "type": "Opaque"})
    recorder = Recorder(client.CoreV1Api(kube_api.api_client()).list_secret_for_all_namespaces)
    # Just before the second watch: the fake answers the next request on the path with 410.
    recorder.before("watch", 2, lambda: kube_api.fail("GET", "/api/v1/secrets", 410, "Expired"))
    informer = start(
        Informer("secrets", recorder, lambda obj: obj["metadata"]["name"], watch_timeout=1)
    )
    kube_api.put("secrets", {"metadata": {"name": "new", "namespace": "team"}, "type": "Opaque"})
    assert _wait(lambda: informer.lists == 2)
    assert recorder.of("watch")[1].status == 410
    assert (informer.expired, informer.failures) == (1, 0)
    assert _names(informer) == ["keep", "new"]


def test_a_dropped_watch_connection_resumes_from_the_last_version_without_relisting(
    admin: Any, namespaces: Namespaces, proxied: tuple[CuttableProxy, Any], start: Start
) -> None:
    from kubernetes import client

    proxy, api = proxied
    namespace = namespaces("cut")
    admin.create_namespaced_secret(namespace, _secret("listed"))
    recorder = Recorder(client.CoreV1Api(api).list_secret_for_all_namespaces)
    informer = start(_informer(recorder, namespace, watch_timeout=60))
    last = admin.create_namespaced_secret(namespace, _secret("watched")).metadata.resource_version
    assert _wait(lambda: informer.resource_version == last)
    proxy.cut()  # mid-stream: the watch's connection breaks
    assert _wait(lambda: len(recorder.of("watch")) == 2)
    assert recorder.of("watch")[1].args["resource_version"] == last
    assert informer.failures == 1
    admin.create_namespaced_secret(namespace, _secret("after"))
    assert _wait(lambda: (namespace, "after") in informer.items)  # and the watch goes on
    assert informer.lists == 1
    assert proxy.connections >= 2  # the cut one, and a new one the watch resumed on


# -- failures that repeat --------------------------------------------------------------------


def test_a_list_the_api_server_keeps_refusing_is_reported_once_not_at_every_retry(
    cluster: Cluster, tmp_path: Any
) -> None:
    import structlog
    from kubernetes import client

    namespace = cluster.namespace("informer-forbidden")
    cluster.service_account(namespace, "nobody")  # no RBAC at all: every list is a 403
    kubeconfig = cluster.service_account_kubeconfig(namespace, "nobody", tmp_path / "nobody")
    api = cluster.api_client(kubeconfig)
    recorder = Recorder(client.CoreV1Api(api).list_pod_for_all_namespaces)
    informer = Informer("pods", recorder, lambda obj: obj, max_backoff=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=informer.run, args=(stop,), daemon=True)
    with structlog.testing.capture_logs() as logs:
        thread.start()
        try:
            assert _wait(lambda: informer.failures >= 4)
        finally:
            stop.set()
            thread.join(10)
            api.close()
    assert {call.status for call in recorder.of("list")} == {403}
    levels = [line["log_level"] for line in logs if line["event"] == "informer_failed"]
    # The stop may come between a failure being counted and its line: at least 3 lines.
    assert len(levels) >= 3 and levels[0] == "warning" and set(levels[1:]) == {"debug"}
    assert informer.failures >= 4 and not informer.synced.is_set()
