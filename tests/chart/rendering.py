"""Render the Helm chart offline with the Helm SDK (the ``helm-python-sdk`` wheel).

``helm_python`` binds Helm's own Go SDK (chart loading, the template engine with Sprig,
``values.schema.json`` validation, lint), so what is tested here is what ``helm install``
renders, without a ``helm`` binary or a cluster.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "swapper"
VALUES_DIR = Path(__file__).parent / "values"
VALUES_FILES = sorted(p.stem for p in VALUES_DIR.glob("*.yaml"))
RELEASE = "swapper"
NAMESPACE = "swapper-system"
CHART_YAML = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
# The Kubernetes versions the chart claims, each validated by test_kubernetes_schemas.py.
KUBERNETES_VERSIONS: list[str] = CHART_YAML["annotations"][
    "swapper.io/tested-kubernetes-versions"
].split()

Obj = dict[str, Any]


@functools.cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def values_file(name: str) -> Obj:
    return yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text(encoding="utf-8")) or {}


def merged(base: Obj, extra: Obj) -> Obj:
    """``extra`` over ``base``, maps merged recursively (like several ``-f`` files)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Rendered:
    objects: tuple[Obj, ...]
    notes: str
    templates: tuple[tuple[str, str], ...]  # (template path, kind) of each object

    def __iter__(self) -> Iterator[Obj]:
        return iter(self.objects)

    def all(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Obj:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def has(self, kind: str) -> bool:
        return bool(self.all(kind))

    def hooks(self) -> list[Obj]:
        return [o for o in self.objects if "helm.sh/hook" in annotations(o)]

    def release_objects(self) -> list[Obj]:
        return [o for o in self.objects if "helm.sh/hook" not in annotations(o)]

    @property
    def deployment(self) -> Obj:
        return self.one("Deployment")

    @property
    def pod(self) -> Obj:
        return self.deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]

    @property
    def container(self) -> Obj:
        return self.pod["containers"][0]  # type: ignore[no-any-return]

    @property
    def webhook(self) -> Obj:
        return self.one("MutatingWebhookConfiguration")["webhooks"][0]  # type: ignore[no-any-return]

    @property
    def config_map(self) -> Obj:
        """The ConfigMap of swapper's config file (the one the pods mount)."""
        volume = next(v for v in self.pod["volumes"] if v["name"] == "config")
        return self.one("ConfigMap", volume["configMap"]["name"])

    @property
    def config(self) -> Obj:
        return yaml.safe_load(self.config_map["data"]["config.yaml"])  # type: ignore[no-any-return]

    @property
    def access_config_map(self) -> Obj:
        """The ConfigMap of the access check's remembered answers (the config names it)."""
        return self.one("ConfigMap", self.config["source"]["access"]["configMap"])


def annotations(obj: Obj) -> dict[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


@functools.cache
def _render(values_json: str, namespace: str, release: str) -> Rendered:
    manifests = chart().render(
        json.loads(values_json), name=release, namespace=namespace, is_install=True
    )
    objects: list[Obj] = []
    templates: list[tuple[str, str]] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
                templates.append((path, doc["kind"]))
    return Rendered(tuple(objects), notes, tuple(templates))


def render(
    values: Obj | None = None,
    *,
    file: str | None = "defaults",
    namespace: str = NAMESPACE,
    release: str = RELEASE,
) -> Rendered:
    """Render with ``values`` over the values file ``file``. Cached.

    ``file`` defaults to ``defaults.yaml``, the chart's defaults plus the target registry the
    chart has no default for; ``file=None`` renders ``values`` alone."""
    base = values_file(file) if file else {}
    combined = merged(base, values or {})
    return copy.deepcopy(_render(json.dumps(combined, sort_keys=True), namespace, release))


def render_error(values: Obj, *, file: str | None = "defaults") -> str:
    """The message of a render that must fail (a schema violation or a template ``fail``)."""
    try:
        render(values, file=file)
    except helm.HelmError as exc:
        return str(exc)
    raise AssertionError(f"the render with {values} did not fail")


def lint(values: Obj | None = None, kube_version: str | None = None) -> dict[str, Any]:
    """``helm lint --strict`` (``kube_version``: e.g. "1.29", for its deprecated-API checks)."""
    return helm.lint(
        CHART,
        values or {},
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{kube_version}.0" if kube_version else None,
    )
