"""Who asks for an image: a pod's namespace, pull secrets and ServiceAccount. The access check
reads the source with them, and the copy queue copies with them (no I/O, nothing imported)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Requester:
    """Whose pod asks: a copy reads the source with this pod's pull secrets, and a private
    image is swapped only for pods whose own secrets can read it."""

    namespace: str
    pull_secrets: tuple[str, ...] = ()  # the pod's spec.imagePullSecrets names
    service_account: str = ""  # the pod's ServiceAccount; its secrets count when the pod has none
