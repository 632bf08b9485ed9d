"""What the end-to-end tests share: the registries, the chart values they install with."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from registries import Image, Registry, TokenServer, get_manifest

from swapper.images import parse

PRIVATE_USER = ("alice", "alice-secret")
MIRROR_USER = ("mirror", "mirror-secret")


@dataclass
class Registries:
    tokens: TokenServer
    source: Registry
    target: Registry
    image: Image
    credentials_file: Path

    def source_ref(self, repo: str, tag: str = "1.0") -> str:
        return f"{self.source.host}/{repo}:{tag}"

    def mirror_ref(self, repo: str, tag: str = "1.0") -> str:
        """Where swapper mirrors ``repo:tag`` of the source (its own naming rule)."""
        return f"{self.target.host}/mirror/{parse(self.source_ref(repo, tag)).mirror_path()}:{tag}"


def e2e_values(registries: Registries, **config: Any) -> dict[str, Any]:
    """The chart's values for these tests: a real target, enforcing, private images allowed."""
    values: dict[str, Any] = {
        # The API server reaches the webhook by URL on 127.0.0.1 (see e2e/serving.py).
        "certificates": {"extraSANs": ["127.0.0.1"]},
        "replicaCount": 2,
        "config": {
            "dryRun": False,
            "imageSwapPolicy": "exists",
            "imageCopyPolicy": "immediate",
            "imageCopyDeadline": "6s",
            "admissionTimeout": "8s",
            "source": {"podPullSecrets": True},
            "target": {
                "type": "generic",
                "generic": {
                    "registry": f"{registries.target.host}/mirror",
                    "insecure": True,
                    "credentialsFile": str(registries.credentials_file),
                },
                "pullSecret": {"enabled": True, "name": "mirror-pull"},
                "existenceCache": {"ttl": "2s"},
            },
            "mirror": {"hosts": {registries.source.host: {"insecure": True}}},
        },
    }
    values["config"].update(config)
    return values


def docker_config_secret(namespace: str, name: str, host: str, user: tuple[str, str]) -> dict:
    auths = {host: {"username": user[0], "password": user[1]}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {
            ".dockerconfigjson": base64.b64encode(json.dumps({"auths": auths}).encode()).decode()
        },
    }


def pod(
    name: str,
    images: dict[str, str],
    *,
    secrets: tuple[str, ...] = (),
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod manifest: container name -> image."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": n, "image": i} for n, i in images.items()]},
    }
    if secrets:
        body["spec"]["imagePullSecrets"] = [{"name": s} for s in secrets]
    return body


def create_pod(cluster: Any, namespace: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Create through the API server (admission chain and all); the pod as stored."""
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    created: dict[str, Any] = json.loads(
        core.create_namespaced_pod(namespace, body, _preload_content=False, **kwargs).data
    )
    return created


def images(pod_json: dict[str, Any], field: str = "containers") -> dict[str, str]:
    return {c["name"]: c["image"] for c in pod_json["spec"].get(field) or []}


def pull_secrets(pod_json: dict[str, Any]) -> list[str]:
    return [s["name"] for s in pod_json["spec"].get("imagePullSecrets") or []]


def metric(hook: Any, name: str) -> float:
    """The sum of every series of a Prometheus metric of a ``swapper serve`` process."""
    with hook.client() as client:
        text = client.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def mirror_ref(registries: Registries, mirror: Registry, repo: str, tag: str = "1.0") -> str:
    """Where swapper mirrors ``repo:tag`` of the source into ``mirror`` (prefix ``mirror``)."""
    return f"{mirror.host}/mirror/{parse(registries.source_ref(repo, tag)).mirror_path()}:{tag}"


def in_mirror(registries: Registries, mirror: Registry, repo: str, tag: str = "1.0") -> bool:
    """Whether ``mirror`` has ``repo:tag`` of the source where swapper mirrors it."""
    path = f"mirror/{parse(registries.source_ref(repo, tag)).mirror_path()}"
    try:
        return get_manifest(mirror, path, tag) is not None
    except httpx.HTTPStatusError:  # docker-registry answers 500 now and then mid-push
        return False
