"""Registry credentials from image pull secrets, matched to images the way the kubelet does.

A pod can read a private image because the kubelet finds credentials for it in the pod's pull
secrets (its own ``imagePullSecrets`` and its ServiceAccount's). swapper copies with the same
credentials, so it must pick them exactly as the kubelet would (``pkg/credentialprovider``):

- Each key of a ``kubernetes.io/dockerconfigjson`` (``{"auths": {KEY: entry}}``) or legacy
  ``kubernetes.io/dockercfg`` (``{KEY: entry}``) secret is read as a URL (``https://`` added when
  it has no scheme); the scheme and a ``/v1/`` or ``/v2/`` path prefix are dropped, so
  ``https://index.docker.io/v1/`` is the key ``index.docker.io``.
- A key matches an image repository (``docker.io/library/nginx``, no tag) when the ports are
  equal, the hosts have the same number of dot-separated parts and each part matches as a glob
  (``*.example.com`` matches ``eu.example.com`` but not ``example.com`` nor ``a.b.example.com``),
  and the key's path is a prefix of the repository path (a string prefix, as in the kubelet).
- Every matching key counts, most specific first (keys reverse-sorted), each key's credentials
  in the order the secrets were given; the kubelet tries them in turn.
- When nothing matches and the image is on Docker Hub, credentials stored under
  ``index.docker.io`` are used.

An entry's ``auth`` field (base64 ``user:password``) wins over ``username``/``password``.
Credentials never appear in a ``repr`` or a log line.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from swapper.credentials import Credentials
from swapper.errors import CredentialsError

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
PULL_SECRET_TYPES = (DOCKER_CONFIG_JSON, DOCKER_CFG)
DEFAULT_REGISTRY_KEY = "index.docker.io"


def _decode_auth(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise CredentialsError("auth field is not base64") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise CredentialsError("auth field must be base64(username:password)")
    return user, password


def _entry(value: Any, source: str) -> Credentials:
    if not isinstance(value, dict):
        raise CredentialsError("registry entry is not an object")
    username = value.get("username") or ""
    password = value.get("password") or ""
    token = value.get("identitytoken") or value.get("identityToken") or ""
    if not all(isinstance(v, str) for v in (username, password, token)):
        raise CredentialsError("username, password and identitytoken must be strings")
    auth = value.get("auth")
    if auth:
        if not isinstance(auth, str):
            raise CredentialsError("auth field must be a string")
        username, password = _decode_auth(auth)
    return Credentials(username, password, token, source)


def parse_pull_secret(
    secret_type: str, data: Mapping[str, str], source: str = ""
) -> dict[str, Credentials]:
    """Registry key -> credentials of one Secret (``data`` as the API returns it: base64).

    Raises :class:`CredentialsError` (naming no secret value) when the secret is not a pull
    secret or its content cannot be read.
    """
    if secret_type == DOCKER_CONFIG_JSON:
        item = ".dockerconfigjson"
    elif secret_type == DOCKER_CFG:
        item = ".dockercfg"
    else:
        raise CredentialsError(f"secret type {secret_type!r} is not an image pull secret")
    raw = data.get(item)
    if not raw:
        raise CredentialsError(f"secret has no {item} item")
    try:
        doc = json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError):
        raise CredentialsError(f"{item} is not base64-encoded JSON") from None
    return parse_docker_config(doc, source, legacy=secret_type == DOCKER_CFG)


def parse_docker_config(doc: Any, source: str = "", legacy: bool = False) -> dict[str, Credentials]:
    """Registry key -> credentials of a docker config document: ``{"auths": {...}}`` (a
    ``config.json``, an ``--authfile``, a dockerconfigjson secret) or, ``legacy``, the bare
    mapping of a ``.dockercfg``."""
    if not legacy:
        doc = doc.get("auths") if isinstance(doc, dict) else None
        if doc is None:
            return {}
    if not isinstance(doc, dict):
        raise CredentialsError("the docker config is not a JSON object")
    return {str(key): _entry(value, source) for key, value in doc.items()}


def keyring_key(location: str) -> str | None:
    """The kubelet's index key for a docker config location, or None when it is not a URL."""
    value = location if location.startswith(("https://", "http://")) else "https://" + location
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    host = parts.netloc.rpartition("@")[2]
    if not host:
        return None
    path = parts.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return host + path if path and path != "/" else host


def _split_host(netloc: str) -> tuple[list[str], str]:
    """Host parts and port, like Go's ``net.SplitHostPort`` with the kubelet's fallback."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end != -1 and netloc[end + 1 : end + 2] == ":":
            return netloc[1:end].split("."), netloc[end + 2 :]
        return netloc.split("."), ""
    host, sep, port = netloc.rpartition(":")
    if sep and ":" not in host:
        return host.split("."), port
    return netloc.split("."), ""


def _schemeless(value: str) -> tuple[str, str]:
    parts = urlsplit("https://" + value)
    return parts.netloc.rpartition("@")[2], parts.path


def urls_match(glob: str, target: str) -> bool:
    """Whether the keyring key ``glob`` matches the repository ``target`` (both schemeless)."""
    try:
        glob_host, glob_path = _schemeless(glob)
        target_host, target_path = _schemeless(target)
    except ValueError:
        return False
    glob_parts, glob_port = _split_host(glob_host)
    target_parts, target_port = _split_host(target_host)
    if glob_port != target_port or len(glob_parts) != len(target_parts):
        return False
    if not target_path.startswith(glob_path):
        return False
    return all(fnmatch.fnmatchcase(t, g) for g, t in zip(glob_parts, target_parts, strict=True))


def is_default_registry(repository: str) -> bool:
    """Whether a repository name pulls from Docker Hub (the kubelet's rule)."""
    first, sep, _ = repository.partition("/")
    if not first:
        return False
    if not sep or first in ("docker.io", "index.docker.io"):
        return True
    return not any(c in first for c in ".:")


class Keyring:
    """The credentials of a set of pull secrets, in the order the kubelet would try them."""

    def __init__(self, entries: Iterable[tuple[str, Credentials]] = ()) -> None:
        self._creds: dict[str, list[Credentials]] = {}
        for location, auth in entries:
            key = keyring_key(location)
            if key is not None:
                self._creds.setdefault(key, []).append(auth)
        self._index = sorted(self._creds, reverse=True)

    def __len__(self) -> int:
        return sum(len(v) for v in self._creds.values())

    def lookup(self, repository: str) -> list[Credentials]:
        """Credentials for a normalised repository name (``host/path``, no tag or digest)."""
        found = [a for key in self._index if urls_match(key, repository) for a in self._creds[key]]
        if not found and is_default_registry(repository):
            found = list(self._creds.get(DEFAULT_REGISTRY_KEY, ()))
        return found
