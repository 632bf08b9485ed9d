"""Decisions -> a minimal RFC 6902 JSONPatch (pure).

Only the paths that change: one ``replace`` per swapped image, and the target pull secret
appended to ``spec.imagePullSecrets`` once, never duplicated, never removing the pod's own.
Applying the patch twice (webhook reinvocation) changes nothing the second time, because a
swapped image is at the target and the secret is already listed.

On a pod's creation (``record_originals``), the images it was created with are recorded in the
:data:`~swapper.pods.ORIGINAL_IMAGES` annotation (container name -> image, merged into what is
there), so the controller can put a container back on its source when the mirror fails it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from swapper.admission.review import PatchOperation
from swapper.mutation import Decision, Outcome
from swapper.pods import ORIGINAL_IMAGES, metadata_of, original_images, pull_secret_names


def build_patch(
    pod: Mapping[str, Any],
    decisions: Iterable[Decision],
    pull_secret: str | None,
    may_add_secret: bool = True,
    record_originals: bool = False,
) -> list[PatchOperation]:
    swaps = [
        d
        for d in decisions
        if d.outcome is Outcome.SWAPPED and d.target is not None and d.target != d.container.image
    ]
    ops: list[PatchOperation] = [
        {"op": "replace", "path": d.container.image_path, "value": d.target} for d in swaps
    ]
    if ops and pull_secret and may_add_secret and pull_secret not in pull_secret_names(pod):
        spec = pod.get("spec") or {}
        if isinstance(spec.get("imagePullSecrets"), list):
            ops.append(
                {"op": "add", "path": "/spec/imagePullSecrets/-", "value": {"name": pull_secret}}
            )
        else:
            ops.append(
                {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": pull_secret}]}
            )
    if swaps and record_originals and isinstance(pod.get("metadata"), dict):
        originals = original_images(pod)
        originals.update((d.container.name, d.container.image) for d in swaps)
        ops.append(_annotation(pod, ORIGINAL_IMAGES, json.dumps(originals, sort_keys=True)))
    return ops


def _annotation(pod: Mapping[str, Any], key: str, value: str) -> PatchOperation:
    """Sets one annotation (RFC 6901 escapes ``/`` in the key as ``~1``)."""
    if isinstance(metadata_of(pod).get("annotations"), dict):
        path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        return {"op": "add", "path": path, "value": value}
    return {"op": "add", "path": "/metadata/annotations", "value": {key: value}}
