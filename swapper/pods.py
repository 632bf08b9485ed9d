"""The pod model, written once: a pod's containers, its pull secrets, its ServiceAccount, and the
pod template inside every workload kind. Used by admission, ``explain``, ``audit`` and the
controller alike. Pure: no I/O; imports only the error tree.

Pods are plain JSON mappings as the API server sends them (an AdmissionReview's ``object``, a
list or watch item, a manifest read from YAML). Readers are forgiving where a field is only
informative (names, the ServiceAccount) and strict where a wrong shape would make swapper act
on the wrong thing (:func:`containers` raises :class:`~swapper.errors.MalformedPod`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swapper.errors import ConfigError, MalformedPod

CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
"""The lists of ``spec`` that hold containers, in the order decisions are reported."""

POD_TEMPLATES: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
"""Workload kinds, and where the pod template sits in each."""


@dataclass(slots=True)  # per container: plain init is cheaper; never mutated
class Container:
    field: str  # one of CONTAINER_FIELDS
    index: int
    name: str
    image: str
    spec: Mapping[str, Any]

    @property
    def image_path(self) -> str:
        return f"/spec/{self.field}/{self.index}/image"


def spec_of(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod's ``spec``; raises :class:`MalformedPod` when it is missing or not an object."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise MalformedPod("pod has no spec")
    return spec


def containers(
    pod: Mapping[str, Any],
    fields: Sequence[str] = CONTAINER_FIELDS,
    skip_names: Collection[str] = (),
) -> list[Container]:
    """The containers in ``fields`` of the pod's spec, in order, leaving out those named in
    ``skip_names``. Raises :class:`MalformedPod` for a list or container of the wrong shape."""
    spec = spec_of(pod)
    found: list[Container] = []
    for name in fields:
        items = spec.get(name)
        if items is None:
            continue
        if not isinstance(items, list):
            raise MalformedPod(f"spec.{name} is not a list")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise MalformedPod(f"spec.{name}[{index}] is not an object")
            cname = str(item.get("name", ""))
            if cname in skip_names:
                continue
            image = item.get("image")
            found.append(
                Container(name, index, cname, image if isinstance(image, str) else "", item)
            )
    return found


def container_count(pod: Mapping[str, Any]) -> int:
    """How many containers the pod has, init and ephemeral ones included (lists only; 0 for
    a pod without a spec)."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return 0
    return sum(len(v) for f in CONTAINER_FIELDS if isinstance(v := spec.get(f), list))


def pull_secret_names(pod: Mapping[str, Any]) -> tuple[str, ...]:
    """The names in the pod's ``spec.imagePullSecrets``."""
    spec = pod.get("spec")
    secrets = (spec.get("imagePullSecrets") if isinstance(spec, dict) else None) or []
    if not isinstance(secrets, list):
        return ()
    return tuple(
        s["name"] for s in secrets if isinstance(s, dict) and isinstance(s.get("name"), str)
    )


def service_account(pod: Mapping[str, Any]) -> str:
    """The pod's ``spec.serviceAccountName``, or "" when it names none."""
    spec = pod.get("spec")
    account = spec.get("serviceAccountName") if isinstance(spec, dict) else None
    return account if isinstance(account, str) else ""


def metadata_of(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = pod.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


ORIGINAL_IMAGES = "swapper.io/original-images"
"""The pod annotation admission writes when it swaps: a JSON object, container name -> the image
the pod was created with. The healer's ``revert`` reads it back."""


def original_images(pod: Mapping[str, Any]) -> dict[str, str]:
    """The :data:`ORIGINAL_IMAGES` annotation, read forgivingly: entries that are not strings,
    or an annotation that is not a JSON object, count as absent."""
    annotations = metadata_of(pod).get("annotations")
    raw = annotations.get(ORIGINAL_IMAGES) if isinstance(annotations, dict) else None
    if not isinstance(raw, str):
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def name_of(pod: Mapping[str, Any], fallback: str = "") -> str:
    """For log lines and reports: the pod's name, else its ``generateName`` and ``*``."""
    metadata = metadata_of(pod)
    name = metadata.get("name")
    if isinstance(name, str) and name:
        return name
    generate = metadata.get("generateName")
    if not fallback and isinstance(generate, str) and generate:
        return f"{generate}*"
    return fallback


def namespace_of(pod: Mapping[str, Any], default: str = "") -> str:
    namespace = metadata_of(pod).get("namespace")
    return namespace if isinstance(namespace, str) and namespace else default


def with_namespace(pod: Mapping[str, Any], namespace: str) -> Mapping[str, Any]:
    """The pod with ``metadata.namespace`` set (filters may read it), unless it has one."""
    metadata = metadata_of(pod)
    if metadata.get("namespace") or not namespace:
        return pod
    return {**pod, "metadata": {**metadata, "namespace": namespace}}


def pods_of(document: Any, source: str) -> list[tuple[str, dict[str, Any]]]:
    """The pods a manifest describes, each with a title: a Pod itself, a workload's pod
    template (named and placed like the workload), or the items of a ``List``. Raises
    :class:`ConfigError` naming ``source`` for a document that holds no pod."""
    if document is None:
        return []
    if not isinstance(document, dict):
        raise ConfigError(
            [("(file)", "a manifest must be a mapping (kind, metadata, spec)")], source
        )
    kind = str(document.get("kind") or "Pod")
    metadata = metadata_of(document)
    name = str(metadata.get("name") or "")
    if kind == "List":
        return [pod for item in document.get("items") or [] for pod in pods_of(item, source)]
    if kind == "Pod":
        return [(f"Pod {name}".rstrip(), document)]
    path = POD_TEMPLATES.get(kind)
    if path is None:
        known = ", ".join(["Pod", *POD_TEMPLATES, "List"])
        raise ConfigError(
            [("kind", f"{kind!r} has no pod to explain; expected one of {known}")], source
        )
    template: Any = document
    for key in path:
        template = template.get(key) if isinstance(template, dict) else None
    if not isinstance(template, dict):
        raise ConfigError([(".".join(path), f"{kind} {name} has no pod template")], source)
    template_meta = dict(template.get("metadata") or {})
    template_meta.setdefault("name", name)
    if metadata.get("namespace"):
        template_meta.setdefault("namespace", metadata["namespace"])
    return [(f"{kind} {name}".rstrip(), {**template, "metadata": template_meta})]


def images(pod: Mapping[str, Any]) -> Iterator[str]:
    """Every container image string of the pod (any shape tolerated: odd entries skipped)."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    for field in CONTAINER_FIELDS:
        items = spec.get(field)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("image"), str):
                    yield item["image"]
