"""Decisions -> a minimal RFC 6902 JSONPatch (pure).

Only the paths that change: one ``replace`` per swapped image, and the target pull secret
appended to ``spec.imagePullSecrets`` once, never duplicated, never removing the pod's own.
Applying the patch twice (webhook reinvocation) changes nothing the second time, because a
swapped image is at the target and the secret is already listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from swapper.admission.review import PatchOperation
from swapper.mutation import Decision, Outcome
from swapper.pods import pull_secret_names


def build_patch(
    pod: Mapping[str, Any],
    decisions: Iterable[Decision],
    pull_secret: str | None,
    may_add_secret: bool = True,
) -> list[PatchOperation]:
    ops: list[PatchOperation] = [
        {"op": "replace", "path": d.container.image_path, "value": d.target}
        for d in decisions
        if d.outcome is Outcome.SWAPPED and d.target is not None and d.target != d.container.image
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
    return ops
