"""A generic OCI distribution registry as the target (``target.type: generic``).

Existence is a ``HEAD /v2/<name>/manifests/<reference>``. Auth: anonymous, basic (username and
password from ``credentialsFile``, a YAML/JSON file with ``username`` and ``password``), and
bearer tokens obtained from the registry's ``WWW-Authenticate`` challenge. Repositories need no
creation on a generic registry; ``ensure_repository`` is a no-op.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import yaml

from swapper.config import GenericRegistry
from swapper.errors import ConfigError, RegistryError
from swapper.images import ImageReference, is_at_endpoint, parse
from swapper.targets.base import Credentials

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def read_credentials(path: str) -> Credentials:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([("target.generic.credentialsFile", f"cannot read: {exc}")]) from None
    if not isinstance(data, dict) or not data.get("username") or not data.get("password"):
        raise ConfigError([("target.generic.credentialsFile", "needs keys username and password")])
    return Credentials(str(data["username"]), str(data["password"]))


def _parse_challenge(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {"scheme": scheme.lower()}
    for part in httpx.Headers({"x": rest}).get_list("x", split_commas=True):
        key, _, value = part.strip().partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return params


class GenericTarget:
    def __init__(self, config: GenericRegistry, timeout: float = 5.0) -> None:
        self.config = config
        self.credentials = (
            read_credentials(config.credentials_file) if config.credentials_file else None
        )
        verify: ssl.SSLContext | bool = True
        if config.ca_file:
            verify = ssl.create_default_context(cafile=config.ca_file)
        scheme = "http" if config.insecure else "https"
        self._base = f"{scheme}://{config.domain}"
        self._client = httpx.AsyncClient(verify=verify, timeout=timeout)
        self._tokens: dict[str, str] = {}

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    def is_origin(self, ref: ImageReference) -> bool:
        return is_at_endpoint(ref, self.config.endpoint)

    async def image_exists(self, target: str) -> bool:
        ref = parse(target)
        reference = ref.digest or ref.tag or "latest"
        url = f"{self._base}/v2/{ref.path}/manifests/{reference}"
        scope = f"repository:{ref.path}:pull"
        response = await self._head(url, scope)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise RegistryError(f"HEAD {url} answered {response.status_code}")

    async def _head(self, url: str, scope: str) -> httpx.Response:
        headers = {"Accept": MANIFEST_TYPES}
        token = self._tokens.get(scope)
        auth: httpx.Auth | None = None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif self.credentials:
            auth = httpx.BasicAuth(self.credentials.username, self.credentials.password)
        response = await self._client.head(
            url, headers=headers, auth=auth or httpx.USE_CLIENT_DEFAULT
        )
        if response.status_code != 401:
            return response
        challenge = _parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge["scheme"] != "bearer" or "realm" not in challenge:
            return response
        self._tokens[scope] = await self._token(challenge, scope)
        headers["Authorization"] = f"Bearer {self._tokens[scope]}"
        return await self._client.head(url, headers=headers)

    async def _token(self, challenge: dict[str, str], scope: str) -> str:
        params = {"scope": scope}
        if "service" in challenge:
            params["service"] = challenge["service"]
        auth = (
            httpx.BasicAuth(self.credentials.username, self.credentials.password)
            if self.credentials
            else None
        )
        response = await self._client.get(challenge["realm"], params=params, auth=auth)
        if response.status_code != 200:
            raise RegistryError(f"token endpoint answered {response.status_code}")
        body = response.json()
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
            raise RegistryError("token endpoint returned no token")
        return token

    async def ensure_repository(self, repository: str) -> None:
        return None

    async def pull_credentials(self) -> Credentials | None:
        return self.credentials

    async def aclose(self) -> None:
        await self._client.aclose()
