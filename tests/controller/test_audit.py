"""``swapper audit``: the aggregate, its three renderings, the registry checks on a real
registry, and the command against the real API server as an identity that may only list pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.cluster import Cluster
from helpers import run_swapper
from registries import (
    Registry,
    get_manifest,
    make_image,
    make_layer,
    push_image,
    start_registry,
)

from swapper.config import Config, GenericRegistry, load_config
from swapper.controller.audit import (
    Audit,
    Report,
    registries_for,
    render_html,
    render_json,
    render_table,
)
from swapper.images import parse, target_reference
from swapper.mirror.marks import Marker, OCIMarkStore
from swapper.oci import HostConfig, RegistryClient
from swapper.targets.generic import GenericTarget

ENDPOINT = "mirror.example.com/mirror"
RBAC = "rbac.authorization.k8s.io"


def config(**overrides: Any) -> Config:
    data: dict[str, Any] = {
        "imageSwapPolicy": "always",
        "imageCopyPolicy": "delayed",
        "source": {
            "checkAccess": False,
            "filters": [{"jmespath": "obj.metadata.labels.skip == 'yes'"}],
        },
        "target": {"type": "generic", "generic": {"registry": ENDPOINT}},
    }
    data.update(overrides)
    return load_config(data, "test")


def pod(namespace: str, *images: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [{"name": f"c{i}", "image": i_} for i, i_ in enumerate(images)]},
    }


def settle(audit: Audit) -> Report:
    return asyncio.run(audit.settle())


def mirror_of(image: str, endpoint: str = ENDPOINT) -> str:
    return target_reference(parse(image), endpoint)


# -- the aggregate ----------------------------------------------------------------------------


def test_pods_are_counted_per_namespace_image_and_decision_and_a_pod_once_per_image() -> None:
    audit = Audit(config())
    audit.add(pod("apps", "nginx:1.27", "nginx:1.27"))  # the same image twice: one pod
    audit.add(pod("apps", "nginx:1.27", "busybox:1.36"))
    audit.add(pod("apps", "nginx:1.27", labels={"skip": "yes"}))  # the filter: its own row
    audit.add(pod("web", f"{ENDPOINT}/docker.io/library/nginx:1.27"))
    audit.add(pod("web", "UPPER/case:1"))
    report = settle(audit)
    got = {(r.namespace, r.image, r.decision): (r.pods, r.target) for r in report.rows}
    assert got == {
        ("apps", "nginx:1.27", "swapped"): (2, mirror_of("nginx:1.27")),
        ("apps", "nginx:1.27", "skipped-filter"): (1, None),
        ("apps", "busybox:1.36", "swapped"): (1, mirror_of("busybox:1.36")),
        ("web", f"{ENDPOINT}/docker.io/library/nginx:1.27", "skipped-origin"): (1, None),
        ("web", "UPPER/case:1", "invalid-reference"): (1, None),
    }
    assert report.pods == 5 and report.skipped == 0
    assert report.namespaces == {"apps": 3, "web": 2}
    reasons = {r.decision: r.reason for r in report.rows}
    assert reasons["skipped-filter"] == "skipped by filter 0: obj.metadata.labels.skip == 'yes'"
    assert reasons["swapped"] == "a copy would be queued"
    assert "lowercase" in reasons["invalid-reference"]


def test_with_mirror_verify_audit_checks_no_signature_and_says_so(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "cosign.pub"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    verify = [{"keys": [str(key)], "images": ["docker.io/library/nginx"]}]
    audit = Audit(config(mirror={"verify": verify}))
    audit.add(pod("apps", "nginx:1.27", "busybox:1.36"))
    report = settle(audit)
    assert {(r.image, r.decision) for r in report.rows} == {
        ("nginx:1.27", "swapped"),
        ("busybox:1.36", "swapped"),
    }
    assert any(
        note.startswith("mirror.verify: signatures were not checked") for note in report.notes
    )


def test_malformed_pods_are_skipped_and_counted() -> None:
    audit = Audit(config())
    audit.add({"metadata": {"namespace": "apps"}, "spec": {"containers": "not a list"}})
    audit.add({"metadata": {"namespace": "apps"}})  # no spec
    audit.add({"metadata": {"namespace": "apps"}, "spec": {"containers": ["a string"]}})
    audit.add(pod("apps", "nginx:1.27"))
    report = settle(audit)
    assert report.skipped == 3 and report.pods == 4
    assert [r.image for r in report.rows] == ["nginx:1.27"]
    assert "3 pod(s) could not be read (malformed) and were skipped" in report.notes


def test_with_swap_policy_exists_and_no_registry_asked_every_image_is_assumed_present() -> None:
    audit = Audit(config(imageSwapPolicy="exists", imageCopyPolicy="none"))
    audit.add(pod("apps", "nginx:1.27"))
    report = settle(audit)
    assert [(r.decision, r.reason, r.mirrored) for r in report.rows] == [
        ("swapped", "assumed in the mirror (imageSwapPolicy: exists)", None)
    ]
    assert any("every image was taken to be in the mirror" in n for n in report.notes)


def test_ten_thousand_pods_are_aggregated_well_within_the_time_box() -> None:
    images = [f"registry.example.com/team/app{i}:1.{i % 9}" for i in range(400)]
    pods = [
        pod(f"ns-{i % 50}", images[i % 400], images[(i * 7) % 400], "busybox:1.36")
        for i in range(10_000)
    ]
    started = time.perf_counter()
    audit = Audit(config())
    audit.add_all(pods)
    report = settle(audit)
    render_json(report)
    elapsed = time.perf_counter() - started
    print(f"10,000 pods aggregated, settled and rendered as JSON in {elapsed:.2f} s")
    assert report.pods == 10_000
    assert sum(r.pods for r in report.rows if r.image == "busybox:1.36") == 10_000
    assert elapsed < 10, elapsed


def test_a_mirror_that_fails_to_answer_leaves_mirrored_null_and_exists_decides_error() -> None:
    from swapper.controller.audit import Registries
    from swapper.errors import RegistryError
    from swapper.targets.memory import MemoryTarget

    broken = MemoryTarget(ENDPOINT)
    broken.fail_with = RegistryError("mirror is down")
    audit = Audit(config(imageSwapPolicy="exists"))
    audit.add(pod("apps", "nginx:1.27"))
    report = asyncio.run(audit.settle(Registries(broken, None, timeout=1)))
    [row] = report.rows
    assert (row.decision, row.mirrored, row.source) == ("error", None, None)
    assert row.reason == "RegistryError: mirror is down"
    assert broken.calls == {"image_exists": 1}


# -- renderings -------------------------------------------------------------------------------

HOSTILE = 'evil"><script>alert(1)</script><img src=x onerror=alert(2)>:1'


def sample_report() -> Report:
    audit = Audit(config())
    for i in range(3):
        audit.add(pod("apps", "nginx:1.27", "busybox:1.36", labels={"skip": "yes" * (i == 0)}))
    audit.add(pod("web", "redis:7", HOSTILE))
    audit.add({"metadata": {"namespace": "web"}, "spec": {"containers": 5}})
    return settle(audit)


def test_json_has_one_object_per_row_with_exactly_the_documented_keys() -> None:
    report = sample_report()
    document = json.loads(render_json(report))
    assert set(document) == {"items", "pods", "skipped", "namespaces", "forbidden", "notes"}
    assert len(document["items"]) == len(report.rows)
    for item in document["items"]:
        assert list(item) == [
            "namespace",
            "image",
            "pods",
            "decision",
            "target",
            "mirrored",
            "source",
            "reason",
        ]
    assert document["items"][0] == {
        "namespace": "apps",
        "image": "busybox:1.36",
        "pods": 2,
        "decision": "swapped",
        "target": mirror_of("busybox:1.36"),
        "mirrored": None,
        "source": None,
        "reason": "a copy would be queued",
    }
    assert document["skipped"] == 1 and document["pods"] == 5


def test_the_table_sums_up_each_namespace_then_lists_every_row() -> None:
    report = sample_report()
    text = render_table(report)
    lines = text.splitlines()
    assert lines[0].split() == [
        "NAMESPACE",
        "PODS",
        "IMAGES",
        "SWAPPED",
        "SKIPPED-FILTER",
        "INVALID-REFERENCE",
    ]
    assert lines[1].split() == ["apps", "3", "2", "2", "2", "0"]
    assert lines[2].split() == ["web", "2", "2", "1", "0", "1"]
    assert lines[4].split()[:5] == ["NAMESPACE", "IMAGE", "PODS", "DECISION", "TARGET"]
    for row in report.rows:
        assert any(row.image in line and row.decision in line for line in lines[5:])
    assert "note: 1 pod(s) could not be read (malformed) and were skipped" in lines


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.rows: list[list[str]] = []
        self.scripts = 0
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "xlink:href") and value:
                self.urls.append(value)
        if tag == "script":
            self.scripts += 1
        if tag == "tbody":
            self._in_body = True
        if tag == "tr" and self._in_body:
            self.rows.append([])
        if tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        if tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_the_html_page_loads_nothing_from_outside_and_holds_every_row_escaped() -> None:
    report = sample_report()
    page = render_html(report)
    parsed = _Page()
    parsed.feed(page)
    assert parsed.urls == []
    assert not re.search(r"https?://", page)
    assert parsed.scripts == 1  # the sorting script, inline; the hostile image is text
    assert "<script>alert" not in page
    shown = [(cells[0], cells[1], cells[2], cells[3]) for cells in parsed.rows]
    assert shown == [(r.namespace, r.image, str(r.pods), r.decision) for r in report.rows]
    assert any(cells[1] == HOSTILE for cells in parsed.rows)
    assert "<svg" in page and "images per decision" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_html_page_sorts_in_a_real_browser(tmp_path: Path) -> None:
    audit = Audit(config())
    for i in range(1, 6):
        for _ in range(i):
            audit.add(pod("apps", f"app{i}:1"))
    page = tmp_path / "audit.html"
    page.write_text(render_html(settle(audit)))
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            f"file://{page}#sort=pods-desc",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    parsed = _Page()
    parsed.feed(result.stdout)
    assert [cells[2] for cells in parsed.rows] == ["5", "4", "3", "2", "1"]


# -- the registries ---------------------------------------------------------------------------


@pytest.fixture
def registries(tmp_path: Path) -> Iterator[tuple[Registry, Registry, Registry]]:
    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry is not installed")
    started = [
        start_registry(tmp_path / "source", access_log=True),
        start_registry(tmp_path / "private", users={"u": "p"}),
        start_registry(tmp_path / "mirror", access_log=True),
    ]
    yield started[0], started[1], started[2]
    for registry in started:
        registry.stop()


def test_registries_are_asked_once_per_image_whether_the_mirror_has_it_and_the_source_answers(
    registries: tuple[Registry, Registry, Registry],
) -> None:
    source, private, mirror = registries
    image = make_image([make_layer("audit")])
    push_image(source, "team/app", image, "1")
    push_image(source, "team/app", image, "2")
    push_image(private, "team/secret", image, "1")
    endpoint = f"{mirror.host}/mirror"
    present = f"{source.host}/team/app:1"
    push_image(mirror, parse(mirror_of(present, endpoint)).name.partition("/")[2], image, "1")
    missing = f"{source.host}/team/app:2"
    hidden = f"{private.host}/team/secret:1"
    down = "127.0.0.1:1/team/app:1"
    cfg = load_config(
        {
            "imageSwapPolicy": "exists",
            "imageCopyPolicy": "delayed",
            "source": {"checkAccess": True},
            "target": {"type": "generic", "generic": {"registry": endpoint, "insecure": True}},
            "mirror": {
                "hosts": {h: {"insecure": True} for h in (source.host, private.host, "127.0.0.1:1")}
            },
        },
        "test",
    )
    audit = Audit(cfg)
    for namespace in ("a", "b"):  # two namespaces: still one check per image
        audit.add(pod(namespace, present, missing))
        audit.add(pod(namespace, hidden, down))
    from swapper.targets.generic import GenericTarget

    generic = cfg.target.generic
    assert generic is not None

    async def run() -> Report:
        checks, close = registries_for(cfg, GenericTarget(generic), timeout=3)
        try:
            return await audit.settle(checks)
        finally:
            await close()

    before = {r.host: len(r.logs().splitlines()) for r in (source, mirror)}
    report = asyncio.run(run())
    after = {r.host: r.logs().splitlines()[before[r.host] :] for r in (source, mirror)}
    got = {
        (r.namespace, r.image): (r.decision, r.mirrored, r.source)
        for r in report.rows
        if r.namespace == "a"
    }
    assert got == {
        ("a", present): ("swapped", True, "readable"),
        ("a", missing): ("not-found", False, "readable"),
        ("a", hidden): ("not-found", False, "private"),
        ("a", down): ("not-found", False, "unreachable"),
    }
    assert {
        (r.image, r.decision, r.mirrored, r.source) for r in report.rows if r.namespace == "b"
    } == {(image, *answer) for (_, image), answer in got.items()}
    reasons = {r.image: r.reason for r in report.rows}
    assert reasons[present] == "in the mirror"
    assert reasons[missing] == "not in the mirror yet; a copy would be queued"
    assert "refuses anonymous reads" in reasons[hidden]
    assert "did not answer" in reasons[down]
    # Each distinct image asked once (HEAD only): the source registry saw two manifest HEADs.
    asked = [line for line in after[source.host] if "HEAD /v2/team/app/manifests/" in line]
    assert len(asked) == 2, after[source.host]
    written = [
        line
        for r in (source, mirror)
        for line in after[r.host]
        if re.search(r'"(PUT|POST|PATCH|DELETE) /v2/', line)
    ]
    assert written == []
    assert any('"HEAD /v2/mirror/' in line for line in after[mirror.host])


# -- the command against the API server -------------------------------------------------------


def list_pods_account(cluster: Cluster, namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig for a ServiceAccount that may only list pods in ``namespace``."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    cluster.service_account(namespace, name)
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )
    kubeconfig = cluster.service_account_kubeconfig(namespace, name, path)
    deadline = time.monotonic() + 15
    while cluster.kubectl(
        "get", "pods", "-n", namespace, kubeconfig=kubeconfig, check=False
    ).returncode:
        if time.monotonic() > deadline:
            raise AssertionError("RBAC not in effect after 15 s")
        time.sleep(0.05)
    return kubeconfig


def test_without_a_cluster_wide_list_each_namespace_is_read_on_its_own_and_refusals_noted(
    cluster: Cluster, tmp_path: Path
) -> None:
    from kubernetes import client

    from swapper.controller.audit import read_pods

    suffix = uuid.uuid4().hex[:6]
    namespace = cluster.namespace(f"audit-own-{suffix}")
    other = cluster.namespace(f"audit-not-{suffix}")
    create_pod(cluster, namespace, "a", "nginx:1.27")
    create_pod(cluster, namespace, "b", "nginx:1.27")
    create_pod(cluster, other, "c", "nginx:1.27")
    kubeconfig = list_pods_account(cluster, namespace, "auditor", tmp_path / "auditor")
    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    name = f"audit-namespaces-{suffix}"
    rule = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": [rule]})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "auditor", "namespace": namespace}],
        }
    )
    try:
        deadline = time.monotonic() + 15
        while cluster.kubectl("get", "ns", kubeconfig=kubeconfig, check=False).returncode:
            assert time.monotonic() < deadline, "RBAC not in effect after 15 s"
            time.sleep(0.05)
        audit = Audit(config())
        api = cluster.api_client(kubeconfig)
        read_pods(audit, api, page_size=1)
    finally:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
    assert audit.per_namespace == {namespace: 2}
    refused = [ns for ns, _ in audit.forbidden]
    assert other in refused and namespace not in refused
    assert len(refused) == len(set(refused))  # each once
    report = asyncio.run(audit.settle())
    assert [(r.namespace, r.image, r.pods) for r in report.rows] == [(namespace, "nginx:1.27", 2)]


def create_pod(cluster: Cluster, namespace: str, name: str, *images: str, **labels: str) -> None:
    from kubernetes import client

    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
        },
    }
    client.CoreV1Api(cluster.api_client()).create_namespaced_pod(
        namespace, body, _preload_content=False
    )


def test_audit_reads_the_live_pods_as_json_and_writes_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    namespace = cluster.namespace(f"audit-{suffix}")
    other = cluster.namespace(f"audit-other-{suffix}")
    create_pod(cluster, namespace, "web-1", "nginx:1.27")
    create_pod(cluster, namespace, "web-2", "nginx:1.27", "busybox:1.36")
    create_pod(cluster, namespace, "skipped", "nginx:1.27", skip="yes")
    create_pod(cluster, namespace, "origin", f"{ENDPOINT}/docker.io/library/redis:7")
    create_pod(cluster, namespace, "odd", "UPPER/case:1")
    create_pod(cluster, other, "hidden", "nginx:1.27")
    kubeconfig = list_pods_account(cluster, namespace, "auditor", tmp_path / "auditor")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "imageSwapPolicy": "always",
                "imageCopyPolicy": "delayed",
                "source": {
                    "checkAccess": False,
                    "filters": [{"jmespath": "obj.metadata.labels.skip == 'yes'"}],
                },
                "target": {"type": "generic", "generic": {"registry": ENDPOINT}},
            }
        )
    )
    args = ["audit", "--config", str(config_file), "--kubeconfig", str(kubeconfig)]
    result = run_swapper(*args, "-n", namespace, "-n", other, "-o", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)

    def item(image: str, pods: int, decision: str, target: str | None, reason: str) -> Any:
        return {
            "namespace": namespace,
            "image": image,
            "pods": pods,
            "decision": decision,
            "target": target,
            "mirrored": None,
            "source": None,
            "reason": reason,
        }

    assert document["items"] == [
        item(
            "UPPER/case:1",
            1,
            "invalid-reference",
            None,
            "invalid image reference 'UPPER/case:1': repository name must be lowercase "
            "('UPPER' is not a registry host: it has no '.' or ':' and is not 'localhost')",
        ),
        item(
            "busybox:1.36",
            1,
            "swapped",
            f"{ENDPOINT}/docker.io/library/busybox:1.36",
            "a copy would be queued",
        ),
        item(
            f"{ENDPOINT}/docker.io/library/redis:7",
            1,
            "skipped-origin",
            None,
            "already in the target registry",
        ),
        item(
            "nginx:1.27",
            2,
            "swapped",
            f"{ENDPOINT}/docker.io/library/nginx:1.27",
            "a copy would be queued",
        ),
        item(
            "nginx:1.27",
            1,
            "skipped-filter",
            None,
            "skipped by filter 0: obj.metadata.labels.skip == 'yes'",
        ),
    ]
    assert document["pods"] == 5 and document["skipped"] == 0
    assert document["namespaces"] == {namespace: 5}
    [refused] = document["forbidden"]
    assert refused["namespace"] == other and "HTTP 403" in refused["message"]
    # The refusal is said once on stderr too, and nothing else is.
    assert result.stderr.splitlines() == [
        f"swapper: warning: may not list pods in namespace {other} (HTTP 403): left out of "
        "the report"
    ]

    # Not allowed to list pods across namespaces, nor to list namespaces: one clean line.
    result = run_swapper(*args)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("swapper: list pods in all namespaces: HTTP 403"), line
    assert line.endswith("nor may namespaces be listed: give --namespace"), line

    # On a terminal, stderr shows the pods read so far.
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "swapper", *args, "-n", namespace, "--out", os.devnull],
        stderr=follower,
        stdout=subprocess.DEVNULL,
    )
    os.close(follower)
    assert process.wait(timeout=60) == 0
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the writer is gone
        while chunk := os.read(leader, 4096):
            shown += chunk
    os.close(leader)
    assert b"\rswapper: 5 pods read" in shown, shown

    # The HTML report of the same pods, written to a file.
    out = tmp_path / "audit.html"
    result = run_swapper(*args, "-n", namespace, "-o", "html", "--out", str(out))
    assert result.returncode == 0, result.stderr and result.stdout == ""
    assert out.read_text().count("<tr><td") == 5

    # Nothing was written by the auditor: only reads in the API server's audit log.
    user = f"system:serviceaccount:{namespace}:auditor"
    verbs = {
        str(e.get("verb"))
        for e in cluster.audit_events()
        if (e.get("user") or {}).get("username") == user
    }
    assert verbs and verbs <= {"list", "get", "watch"}, verbs
    assert "list" in verbs


@pytest.mark.parametrize(
    "problem",
    ["missing", "unreachable"],
)
def test_a_kubeconfig_that_cannot_be_used_is_one_clean_line(problem: str, tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        yaml.safe_dump({"target": {"type": "generic", "generic": {"registry": ENDPOINT}}})
    )
    kubeconfig = tmp_path / "kubeconfig"
    if problem == "unreachable":
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
    result = run_swapper(
        "audit", "--config", str(config_file), "--kubeconfig", str(kubeconfig), timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("swapper: ")


def test_audit_cleanup_lists_what_cleanup_would_delete_and_deletes_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    namespace = cluster.namespace(f"audit-cleanup-{suffix}")
    create_pod(cluster, namespace, "web", "nginx:1.27")
    kubeconfig = list_pods_account(cluster, namespace, "auditor", tmp_path / "auditor")
    mirror = start_registry(tmp_path / "mirror")  # deletes on
    try:
        endpoint = f"{mirror.host}/m"
        used = "m/docker.io/library/nginx"
        unused = "m/docker.io/library/old"
        in_use = push_image(mirror, used, make_image([make_layer("used")]), "1.27")
        gone = push_image(mirror, unused, make_image([make_layer("old")]), "1")
        unmarked = push_image(mirror, unused, make_image([make_layer("other's")]), "2")

        async def mark_long_ago() -> None:
            client = RegistryClient(hosts={mirror.host: HostConfig(plain_http=True)})
            target = GenericTarget(GenericRegistry(registry=endpoint, insecure=True))
            marker = Marker(
                "ops",
                OCIMarkStore(client, mirror.host),
                target,
                clock=lambda: datetime.now(UTC) - timedelta(days=40),
            )
            try:
                assert await marker.mark(used, "1.27")
                assert await marker.mark(unused, "1")
            finally:
                await client.aclose()
                await target.aclose()

        asyncio.run(mark_long_ago())
        config_file = tmp_path / "config.yaml"
        config_file.write_text(
            yaml.safe_dump(
                {
                    "imageSwapPolicy": "always",
                    "source": {"checkAccess": False},
                    "target": {
                        "type": "generic",
                        "generic": {"registry": endpoint, "insecure": True},
                    },
                    "clusterName": "ops",
                    "cleanup": {"enabled": True, "dryRun": False, "retention": "720h"},
                }
            )
        )
        args = ["audit", "--config", str(config_file), "--kubeconfig", str(kubeconfig)]
        result = run_swapper(*args, "-n", namespace, "--cleanup", "-o", "json")
        assert result.returncode == 0, result.stderr
        preview = json.loads(result.stdout)["cleanup"]

        assert preview["wouldDelete"] == [{"repository": unused, "digest": gone}]
        assert preview["kept"] == {"in-use": 1, "not-swappers": 1, "dry-run": 1}
        assert preview["partial"] is True  # -n: other namespaces' pods were not read
        # A dry run, whatever cleanup.dryRun says:
        for repository, digest in ((unused, gone), (unused, unmarked), (used, in_use)):
            assert get_manifest(mirror, repository, digest) is not None

        table = run_swapper(*args, "-n", namespace, "--cleanup")
        assert table.returncode == 0, table.stderr
        assert f"cleanup: would delete {unused}@{gone}" in table.stdout
    finally:
        mirror.stop()
