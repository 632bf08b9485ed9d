"""``swapper serve`` as the installed chart's webhook, reached by the real API server.

An API server outside a cluster cannot route to a Service (there is no cluster network and no
kube-proxy here), so the chart's webhook is registered with ``clientConfig.url`` pointing at the
local ``swapper serve`` instead of ``clientConfig.service``; everything else in the
MutatingWebhookConfiguration (rules, selectors, timeout, failure and reinvocation policies, the
caBundle the chart's bootstrap set) stays as the chart made it.

Each process runs as the chart's ServiceAccount (a TokenRequest token in a kubeconfig), with the
TLS pair the bootstrap wrote into the Secret and the config from the chart's ConfigMap.
"""

from __future__ import annotations

import base64
import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from e2e.cluster import kube_env
from e2e.install import Installed
from registries import hanging_server
from webhook_process import Webhook, free_port, start_webhook, stop


def serving_pair(installed: Installed, folder: Path) -> Path:
    """tls.crt, tls.key and ca.crt as the webhook pod would find them mounted."""
    secret = installed.read_secret(installed.tls_secret)
    assert secret is not None, "the certificate bootstrap made no TLS Secret"
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("tls.crt", "tls.key", "ca.crt"):
        (folder / key).write_bytes(base64.b64decode(secret["data"][key]))
    (folder / "tls.key").chmod(0o600)
    return folder


def start_swapper(
    installed: Installed,
    folder: Path,
    config: dict[str, Any] | None = None,
    name: str = "a",
    timeout: float = 20,
) -> Webhook:
    """One replica: ``swapper serve`` with the chart's config (``config`` keys over it), named
    ``swapper-<name>`` (``$POD_NAME``, its leader-election identity) in the release namespace
    (``$POD_NAMESPACE``), as the chart's downward API sets them."""
    folder.mkdir(parents=True, exist_ok=True)
    tls = serving_pair(installed, folder / "tls")
    effective = copy.deepcopy(installed.config())
    effective.update(config or {})
    config_file = folder / f"config-{name}.yaml"
    config_file.write_text(yaml.safe_dump(effective))
    kubeconfig = installed.swapper_kubeconfig(folder / f"swapper-{name}.kubeconfig")
    env = {
        **kube_env(kubeconfig),
        "POD_NAME": f"swapper-{name}",
        "POD_NAMESPACE": installed.namespace,
    }
    return start_webhook(folder, config_file, cert_dir=tls, env=env, timeout=timeout)


def point_webhook(installed: Installed, url: str) -> None:
    """Register the chart's webhook with ``clientConfig.url`` (see the module docstring)."""
    from kubernetes import client

    stored = installed.read_webhook_configuration()
    patch = []
    for index, hook in enumerate(stored["webhooks"]):
        bundle = hook["clientConfig"].get("caBundle")
        assert bundle, "the chart's certificate bootstrap set no caBundle"
        patch.append(
            {
                "op": "replace",
                "path": f"/webhooks/{index}/clientConfig",
                "value": {"url": f"{url}/mutate", "caBundle": bundle},
            }
        )
    admission = client.AdmissionregistrationV1Api(installed.cluster.api_client())
    admission.patch_mutating_webhook_configuration(installed.webhook_configuration, patch)


def stopped_url() -> str:
    """A loopback URL where nothing listens (the webhook's pods are all gone)."""
    return f"https://127.0.0.1:{free_port()}"


__all__ = [
    "Webhook",
    "hanging_server",
    "point_webhook",
    "serving_pair",
    "start_swapper",
    "stop",
    "stopped_url",
]


@contextmanager
def sidecar_injector(folder: Path, container: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    """Another mutating webhook, over HTTPS on loopback, that appends ``container`` to pods
    that lack it (as a service mesh's injector does). Yields its URL and CA bundle."""
    import json
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from swapper import certs

    made = certs.generate("sidecar-injector", "e2e", ["127.0.0.1"], days=2)
    folder.mkdir(parents=True, exist_ok=True)
    certs.write(made, folder)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            request = review["request"]
            containers = request["object"]["spec"]["containers"]
            response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
            if all(c["name"] != container["name"] for c in containers):
                patch = [{"op": "add", "path": "/spec/containers/-", "value": container}]
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
            body = json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "response": response,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(folder / "tls.crt"), str(folder / "tls.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", made.ca_cert_pem
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
