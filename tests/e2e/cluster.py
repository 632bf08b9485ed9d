"""A real Kubernetes control plane on loopback: etcd and kube-apiserver, built by binaries.py.

What runs is what a cluster's control plane runs, less the controllers:

- RBAC authorization; client certificates (an ``O=system:masters`` admin); service-account
  tokens signed by the API server and issued through TokenRequest;
- the default admission plugins (ServiceAccount, NamespaceLifecycle, LimitRanger, PodSecurity,
  MutatingAdmissionWebhook, ...);
- an audit policy that records pod requests at ``Metadata`` level, so admission annotations
  (``<webhook name>/<key>``) land in the JSON audit log;
- no watch cache (``--watch-cache=false``): watches are served by etcd itself, so compacting
  etcd makes a watch from an older resourceVersion answer 410 Gone, as a real cluster does when
  a client falls behind;
- ``--enable-aggregator-routing``: a webhook that names a Service is resolved through its
  Endpoints, and with no controller-manager there are none, so the API server fails such a call
  at once instead of dialling a ClusterIP (which would leave loopback).

No kubelet, scheduler or controller-manager: pods stay Pending, which is all admission needs.
Namespaces therefore get no ``default`` ServiceAccount by themselves; :meth:`Cluster.namespace`
creates it, as the ServiceAccount controller would.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from e2e.binaries import Binaries
from e2e.pki import Pki, make_pki
from webhook_process import free_port

JSON = dict[str, Any]

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "resources": [{"group": "", "resources": ["pods", "pods/ephemeralcontainers"]}],
        },
        {  # who writes Secrets, and how often (Metadata: never their data)
            "level": "Metadata",
            "resources": [{"group": "", "resources": ["secrets"]}],
            "verbs": ["create", "update", "patch", "delete"],
        },
        {"level": "None"},
    ],
}


@dataclass
class Cluster:
    folder: Path
    binaries: Binaries
    pki: Pki
    url: str
    etcd_url: str
    audit_log: Path
    admin_kubeconfig: Path
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    # -- clients ----------------------------------------------------------------------------

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A ``kubernetes`` ApiClient: the admin's, or the identity in ``kubeconfig``."""
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(
            config_file=str(kubeconfig or self.admin_kubeconfig),
            client_configuration=configuration,
        )
        return client.ApiClient(configuration)

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [
                str(self.binaries.kubectl),
                f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def write_kubeconfig(self, path: Path, user: JSON, namespace: str = "default") -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "e2e",
                            "cluster": {
                                "server": self.url,
                                "certificate-authority": str(self.pki.ca_cert),
                            },
                        }
                    ],
                    "users": [{"name": "user", "user": user}],
                    "contexts": [
                        {
                            "name": "e2e",
                            "context": {"cluster": "e2e", "user": "user", "namespace": namespace},
                        }
                    ],
                    "current-context": "e2e",
                }
            )
        )
        path.chmod(0o600)
        return path

    # -- objects ------------------------------------------------------------------------------

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        """Create ``name`` (if missing) with its ``default`` ServiceAccount."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.api_client())
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        if labels:
            body["metadata"]["labels"] = labels
        try:
            core.create_namespace(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.service_account(name, "default")
        return name

    def service_account(self, namespace: str, name: str) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.api_client())
        body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
        try:
            core.create_namespaced_service_account(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def token(self, namespace: str, service_account: str, seconds: int = 3600) -> str:
        """A bound token for the ServiceAccount, from the TokenRequest API."""
        from kubernetes import client

        core = client.CoreV1Api(self.api_client())
        answer = core.create_namespaced_service_account_token(
            service_account,
            namespace,
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        return str(answer.status.token)

    def service_account_kubeconfig(self, namespace: str, service_account: str, path: Path) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount (a TokenRequest token)."""
        return self.write_kubeconfig(
            path, {"token": self.token(namespace, service_account)}, namespace
        )

    # -- the audit log and etcd -----------------------------------------------------------------

    def audit_events(self) -> list[JSON]:
        if not self.audit_log.exists():
            return []
        lines = self.audit_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def writes(self, resource: str, namespace: str, name: str, user: str = "") -> list[str]:
        """The verbs of every write of one object that the API server audited, refused ones
        too (the audit policy records Secrets' writes and pods' requests), in order; ``user``
        keeps only that user's."""
        verbs = []
        for event in self.audit_events():
            ref = event.get("objectRef") or {}
            if (
                event.get("verb") in ("create", "update", "patch", "delete")
                and event.get("stage") == "ResponseComplete"
                and (ref.get("resource"), ref.get("namespace"), ref.get("name"))
                == (resource, namespace, name)
                and (not user or (event.get("user") or {}).get("username") == user)
            ):
                verbs.append(str(event["verb"]))
        return verbs

    def _etcd(self, path: str, body: JSON) -> JSON:
        request = urllib.request.Request(
            f"{self.etcd_url}{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: JSON = json.loads(response.read())
        return answer

    def etcd_revision(self) -> int:
        key = base64.b64encode(b"/registry/namespaces/default").decode()
        return int(self._etcd("/v3/kv/range", {"key": key})["header"]["revision"])

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now: every older resourceVersion is gone (410)."""
        revision = self.etcd_revision()
        self._etcd("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            _stop(process)
        self.processes.clear()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _start(name: str, command: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT)


def _wait(
    name: str,
    process: subprocess.Popen[bytes],
    url: str,
    log: Path,
    context: ssl.SSLContext | None,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited {process.returncode}:\n{log.read_text()[-4000:]}")
        with suppress(OSError), urllib.request.urlopen(url, timeout=2, context=context) as answer:
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not ready after {timeout} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


@contextmanager
def running_cluster(folder: Path, binaries: Binaries) -> Iterator[Cluster]:
    """etcd and kube-apiserver on loopback, stopped (and waited for) on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    pki = make_pki(folder / "pki")
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    audit_policy = folder / "audit-policy.yaml"
    audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    cluster = Cluster(
        folder=folder,
        binaries=binaries,
        pki=pki,
        url=f"https://127.0.0.1:{api_port}",
        etcd_url=etcd_url,
        audit_log=folder / "audit.log",
        admin_kubeconfig=folder / "admin.kubeconfig",
    )
    cluster.write_kubeconfig(
        cluster.admin_kubeconfig,
        {"client-certificate": str(pki.cert("admin")), "client-key": str(pki.key("admin"))},
    )
    try:
        etcd_log = folder / "etcd.log"
        etcd = _start(
            "etcd",
            [
                str(binaries.etcd),
                "--name=e2e",
                f"--data-dir={folder / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=e2e={peer_url}",
                "--unsafe-no-fsync",  # a throwaway store: no fsync per write
                "--log-level=warn",
            ],
            etcd_log,
        )
        cluster.processes.append(("etcd", etcd))
        _wait("etcd", etcd, f"{etcd_url}/health", etcd_log, None, 30)

        api_log = folder / "kube-apiserver.log"
        apiserver = _start(
            "kube-apiserver",
            [
                str(binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={folder / 'apiserver-certs'}",
                f"--tls-cert-file={pki.cert('apiserver')}",
                f"--tls-private-key-file={pki.key('apiserver')}",
                "--tls-min-version=VersionTLS12",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_public_key}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                "--service-cluster-ip-range=10.96.0.0/16",  # allocated on paper only
                "--enable-aggregator-routing=true",
                # 127.0.0.1 may not be an endpoint of the kubernetes Service: none is written
                "--endpoint-reconciler-type=none",
                "--watch-cache=false",
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={cluster.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--profiling=false",
                "--v=1",
            ],
            api_log,
        )
        cluster.processes.append(("kube-apiserver", apiserver))
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.cert("admin")), str(pki.key("admin")))
        _wait("kube-apiserver", apiserver, f"{cluster.url}/readyz", api_log, context, 90)
        yield cluster
    finally:
        cluster.stop()


def kube_env(kubeconfig: Path) -> dict[str, str]:
    """Environment for a ``swapper`` subprocess that must reach the cluster as ``kubeconfig``."""
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env["KUBECONFIG"] = str(kubeconfig)
    return env
