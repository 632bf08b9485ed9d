"""The Helm chart installed into the real API server, the way ``helm install`` would do it.

The chart is rendered with the Helm SDK (``chart.rendering``), and its objects are created in
Helm's install order with ``kubectl create --validate=strict`` (server-side strict field
validation: an unknown or misspelt field fails the install, as it would for a user).

The hooks run as Helm runs them: the certificate Job's RBAC first, then its command
(``swapper certs bootstrap`` with the Job's exact arguments, authenticated with a TokenRequest
token of the Job's ServiceAccount), then the release objects, then the post-install run.

Nothing runs the Deployment (there is no kubelet): the tests start ``swapper serve`` themselves,
as the chart's ServiceAccount (a TokenRequest token in a kubeconfig), with the config from the
chart's ConfigMap as the API server stores it.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from chart.rendering import Obj, Rendered, annotations, render
from e2e.cluster import Cluster, kube_env

from swapper import certs

# Helm's install order (pkg/release/util/kind_sorter.go), for the kinds this chart has.
INSTALL_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
    "HorizontalPodAutoscaler",
    "Job",
    "CronJob",
    "MutatingWebhookConfiguration",
]


def install_order(objects: list[Obj]) -> list[Obj]:
    def rank(obj: Obj) -> tuple[int, int]:
        kind = obj["kind"]
        weight = int(annotations(obj).get("helm.sh/hook-weight", "0"))
        return weight, INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)

    return sorted(objects, key=rank)


@dataclass
class Run:
    """One run of a command of the chart's (the bootstrap Job's or CronJob's)."""

    args: list[str]
    returncode: int
    output: str


@dataclass
class Installed:
    cluster: Cluster
    rendered: Rendered
    values: Obj
    folder: Path
    runs: dict[str, Run] = field(default_factory=dict)
    # The TLS Secret and the MutatingWebhookConfiguration as stored after each run, by label.
    stored: dict[str, tuple[Obj | None, Obj]] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return str(self.rendered.deployment["metadata"]["namespace"])

    @property
    def service_account(self) -> str:
        return str(self.rendered.pod["serviceAccountName"])

    @property
    def webhook_configuration(self) -> str:
        return str(self.rendered.one("MutatingWebhookConfiguration")["metadata"]["name"])

    @property
    def tls_secret(self) -> str:
        volumes = self.rendered.pod["volumes"]
        return str(next(v for v in volumes if v["name"] == "tls")["secret"]["secretName"])

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, **kwargs)

    def create(self, objects: list[Obj]) -> None:
        """``kubectl create`` with server-side strict field validation, in Helm's order."""
        for obj in objects:
            self.kubectl("create", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(obj))

    def read_webhook_configuration(self) -> Obj:
        """The chart's MutatingWebhookConfiguration as stored (``{}`` before it exists)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        admission = client.AdmissionregistrationV1Api(self.cluster.api_client())
        try:
            return admission.read_mutating_webhook_configuration(  # type: ignore[no-any-return]
                self.webhook_configuration, _preload_content=False
            ).json()
        except ApiException as exc:
            if exc.status == 404:
                return {}
            raise

    def read_secret(self, name: str, namespace: str | None = None) -> Obj | None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.cluster.api_client())
        try:
            return core.read_namespaced_secret(  # type: ignore[no-any-return]
                name, namespace or self.namespace, _preload_content=False
            ).json()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def container_args(self, kind: str) -> tuple[list[str], str]:
        """The bootstrap container's arguments in the Job or CronJob, and its ServiceAccount."""
        obj = self.rendered.one(kind)
        job = obj["spec"]["jobTemplate"] if kind == "CronJob" else obj
        spec = job["spec"]["template"]["spec"]
        return list(spec["containers"][0]["args"]), str(spec["serviceAccountName"])

    def run_chart_command(self, kind: str, label: str) -> Run:
        """The Job's or CronJob's command, as its ServiceAccount, the way its pod would run it."""
        args, account = self.container_args(kind)
        kubeconfig = self.cluster.service_account_kubeconfig(
            self.namespace, account, self.folder / f"{account}.kubeconfig"
        )
        result = subprocess.run(
            [sys.executable, "-m", "swapper", *args],
            env=kube_env(kubeconfig),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        run = Run(args, result.returncode, result.stdout + result.stderr)
        self.runs[label] = run
        self.stored[label] = (self.read_secret(self.tls_secret), self.read_webhook_configuration())
        return run

    def age_serving_certificate(self, days: int) -> None:
        """Replace the stored serving certificate by one of the same CA that expires in
        ``days``: what the Secret holds a year after install."""
        from kubernetes import client

        secret = self.read_secret(self.tls_secret)
        assert secret is not None
        data = secret["data"]
        ca = (base64.b64decode(data["ca.crt"]), base64.b64decode(data["ca.key"]))
        service = str(self.rendered.one("Service")["metadata"]["name"])
        sans = list(self.values.get("certificates", {}).get("extraSANs", []))
        aged = certs.generate(service, self.namespace, sans, days=days, ca=ca)
        patch = {
            "data": {
                "tls.crt": base64.b64encode(aged.cert_pem).decode(),
                "tls.key": base64.b64encode(aged.key_pem).decode(),
            }
        }
        core = client.CoreV1Api(self.cluster.api_client())
        core.patch_namespaced_secret(self.tls_secret, self.namespace, patch)

    def swapper_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig as the chart's webhook ServiceAccount: exactly the chart's RBAC."""
        return self.cluster.service_account_kubeconfig(self.namespace, self.service_account, path)

    def config(self) -> Obj:
        """swapper's config as the ConfigMap in the API server holds it."""
        from kubernetes import client

        core = client.CoreV1Api(self.cluster.api_client())
        name = self.rendered.config_map["metadata"]["name"]
        stored = core.read_namespaced_config_map(name, self.namespace)
        return yaml.safe_load(stored.data["config.yaml"])  # type: ignore[no-any-return]


def install(cluster: Cluster, values: Obj, folder: Path) -> Installed:
    """Install the chart (hooks included) into ``cluster``; returns what was done."""
    folder.mkdir(parents=True, exist_ok=True)
    rendered = render(values)
    installed = Installed(cluster, rendered, values, folder)
    cluster.namespace(installed.namespace)  # helm install --create-namespace
    hooks = [o for o in rendered.hooks() if o["kind"] != "Job"]
    job = [o for o in rendered.hooks() if o["kind"] == "Job"]
    installed.create(install_order(hooks))
    installed.create(job)  # accepted and stored; with no controller-manager nothing runs it
    installed.run_chart_command("Job", "pre-install")
    installed.create(install_order(rendered.release_objects()))
    installed.run_chart_command("Job", "post-install")
    # The certificate checks need the webhook as the chart made it (calling the Service), so
    # they run here, before the tests point the webhook at a URL: a second hook run (an
    # upgrade) and the renewal CronJob's run on a certificate about to expire.
    installed.run_chart_command("Job", "upgrade")
    installed.age_serving_certificate(days=5)
    installed.stored["aged"] = (
        installed.read_secret(installed.tls_secret),
        installed.read_webhook_configuration(),
    )
    installed.run_chart_command("CronJob", "renewal")
    return installed
