"""Google Artifact Registry as the target (``target.type: gcp``).

Images live under ``<location>-docker.pkg.dev/<projectId>/<repositoryId>[/prefix]``. One
Artifact Registry repository holds every mirrored image: the Docker image paths inside it need
no creation, so :meth:`GARTarget.ensure_repository` only makes sure that one repository exists
(``GetRepository``; with ``createRepository: true`` a missing one is created as a standard
DOCKER repository with the configured labels, description and immutable-tags setting). After
the first success it answers from memory; a failure is remembered for
``failure_backoff`` seconds so a queue of copies does not turn into a storm of API calls.

**Credentials.** Google's default credentials (``google.auth.default``: GKE Workload Identity,
the metadata server, ``GOOGLE_APPLICATION_CREDENTIALS``), scoped to ``cloud-platform``. No key
is required. The OAuth2 access token (about an hour) is refreshed in a thread, shared by every
caller (one refresh at a time) and renewed when a quarter of an hour is left (half of its
remaining life for shorter tokens). It serves three things: the Artifact Registry API calls,
the pushes of the copy engine and the existence checks (Docker registry API, user
``oauth2accesstoken``), and the pull secret (:meth:`GARTarget.pull_credentials`).

**The API.** The official client (``google.cloud.artifactregistry_v1``) over gRPC, every call
in a thread (``asyncio.to_thread``) with a deadline. The channel carries the token through a
small metadata plugin that reads the token refreshed above, so nothing refreshes behind
swapper's back. ``target.gcp.endpoint`` overrides the API host (``HOST[:PORT]``, TLS), or with
``http://`` names a loopback address spoken to in plaintext (gRPC local credentials, which
refuse any peer that is not on the same machine): that is how the tests reach their fake.

**Existence.** ``image_exists`` is a ``HEAD /v2/<name>/manifests/<tag or digest>`` on the
registry host (:class:`swapper.oci.RegistryClient`), rather than the Artifact Registry API's
``GetTag``/``GetDockerImage``: it needs only ``artifactregistry.repositories.downloadArtifacts``,
which the push already needs (the API calls would need ``artifactregistry.tags.get`` and
``artifactregistry.dockerimages.get`` on top), it is one request per check once the registry
token for that image is cached, tags and digests are asked the same way, and it answers exactly
what the kubelet's pull will see.

**Admin** (:class:`~swapper.targets.admin.RegistryAdmin`). The Docker images of the one
Artifact Registry repository are its packages: a repository path (``<projectId>/<repositoryId>/
<package>``, as on the registry host) maps to the package ``<package>`` (its slashes written
``%2F`` in resource names). ``ListPackages`` (filtered to ``prefix``), ``ListTags`` (each tag
names its version, the digest) and ``ListVersions`` (full view: the related tags and the
creation time) are read a page at a time (``page_size``/``page_token``). ``delete_tag`` is
``DeleteTag``; ``delete_manifest`` is ``DeleteVersion`` with ``force`` (its tags go with it),
awaited to the end of its operation. Permission denied or a failed precondition (immutable
tags) raises :class:`~swapper.errors.DeleteRefused`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import grpc
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.api_core.future import polling
from google.cloud import artifactregistry_v1
from google.cloud.artifactregistry_v1.services.artifact_registry.transports import (
    ArtifactRegistryGrpcTransport,
)

from swapper.aio import SingleFlight
from swapper.config import Config, GCPRegistry
from swapper.credentials import Credentials
from swapper.errors import CopyError, CopyReason, DeleteRefused, RegistryError
from swapper.logs import get_logger
from swapper.oci import HostConfig, RetryPolicy
from swapper.targets._oci import host_client, manifest_digest
from swapper.targets.admin import (
    DEFAULT_PAGE_SIZE,
    StoredManifest,
    Tag,
    check_page_size,
    under_prefix,
)
from swapper.targets.base import UnderEndpoint

__all__ = ["CLOUD_PLATFORM_SCOPE", "TOKEN_USERNAME", "GARTarget"]

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# The Docker user name Artifact Registry takes with an access token as the password.
TOKEN_USERNAME = "oauth2accesstoken"  # noqa: S105 - a user name, not a secret
DEFAULT_API_HOST = "artifactregistry.googleapis.com"

log = get_logger("swapper.targets.gar")
_T = TypeVar("_T")

# The documented way to grant what is missing, per call.
_GET_HINT = (
    "the identity needs artifactregistry.repositories.get on it (roles/artifactregistry.writer "
    "on the repository; Google also answers 'permission denied' for a repository that does not "
    "exist when the caller may not read the project's repositories)"
)
_CREATE_HINT = (
    "createRepository needs artifactregistry.repositories.create on the project (a custom role, "
    "or roles/artifactregistry.admin)"
)
_LIST_HINT = (
    "listing needs artifactregistry.packages.list, .tags.list and .versions.list on the "
    "repository (roles/artifactregistry.reader)"
)
_DELETE_HINT = (
    "deleting needs artifactregistry.tags.delete and .versions.delete on the repository "
    "(roles/artifactregistry.repoAdmin); an immutable-tags repository refuses tag deletes"
)
_PULL_HINT = (
    "the identity needs artifactregistry.repositories.downloadArtifacts on the repository "
    "(roles/artifactregistry.writer, or roles/artifactregistry.reader to check only)"
)


class _TokenPlugin(grpc.AuthMetadataPlugin):  # type: ignore[misc]
    """Puts the current access token (and the quota project, if any) on every API call.

    It never refreshes: :class:`GARTarget` refreshes before each call, asynchronously and
    under its own deadline.
    """

    def __init__(self, credentials: Callable[[], google.auth.credentials.Credentials]) -> None:
        self._credentials = credentials

    def __call__(self, context: Any, callback: Any) -> None:
        credentials = self._credentials()
        if not credentials.token:
            callback((), RegistryError("no Google access token yet"))
            return
        headers: dict[str, str] = {}
        credentials.apply(headers)  # type: ignore[no-untyped-call]
        callback(tuple((key.lower(), value) for key, value in headers.items()), None)


class GARTarget(UnderEndpoint):
    """A :class:`~swapper.targets.base.TargetRegistry` on Google Artifact Registry.

    ``hosts`` gives the :class:`~swapper.oci.HostConfig` of registry hosts (the target's own
    is looked up by ``config.domain``; default HTTPS). ``credentials`` replaces Google's
    default credentials (they must be able to ``refresh``). ``clock`` (monotonic seconds)
    decides when the token is renewed and how long a failure is remembered.
    """

    config: GCPRegistry

    def __init__(
        self,
        config: GCPRegistry,
        *,
        hosts: Mapping[str, HostConfig] | None = None,
        credentials: google.auth.credentials.Credentials | None = None,
        clock: Callable[[], float] = time.monotonic,
        api_timeout: float = 10.0,
        create_timeout: float = 120.0,
        token_timeout: float = 30.0,
        renew_before: float = 900.0,
        failure_backoff: float = 30.0,
        registry_retry: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self.repository_name = (
            f"projects/{config.project_id}/locations/{config.location}"
            f"/repositories/{config.repository_id}"
        )
        self._clock = clock
        self._api_timeout = api_timeout
        self._create_timeout = create_timeout
        self._token_timeout = token_timeout
        self._renew_before = renew_before
        self._failure_backoff = failure_backoff
        self._google_credentials = credentials
        self._http: _TimedRequest | None = None
        self._client: artifactregistry_v1.ArtifactRegistryClient | None = None
        self._channel: grpc.Channel | None = None
        # access token state
        self._token: Credentials | None = None
        self._renew_at = 0.0
        self._refreshing: SingleFlight[str, Credentials] = SingleFlight()  # one key: "token"
        # repository state
        self._repository_ready = False
        self._repository_lock = asyncio.Lock()
        self._failure: tuple[float, RegistryError] | None = None
        domain = config.domain
        host_config = (hosts or {}).get(domain, HostConfig())
        self._registry = host_client(
            domain, host_config, self.pull_credentials, api_timeout, registry_retry
        )

    # -- TargetRegistry ------------------------------------------------------------------

    async def image_digest(self, target: str) -> str | None:
        try:
            return await manifest_digest(self._registry, target)
        except CopyError as exc:
            if exc.reason in (CopyReason.UNAUTHORIZED, CopyReason.DENIED):
                raise RegistryError(f"checking {target}: {exc}; {_PULL_HINT}") from exc
            raise

    async def ensure_repository(self, repository: str) -> None:
        """Docker image paths need no creation inside an Artifact Registry repository: this
        makes sure the one Artifact Registry repository exists (once; then from memory)."""
        await self.start()

    async def pull_credentials(self) -> Credentials:
        """``oauth2accesstoken`` and a current access token, valid for at least
        ``min(renew_before, half its lifetime)`` more seconds."""
        token = self._token
        if token is not None and self._clock() < self._renew_at:
            return token
        return await self._refreshing.do("token", self._refresh)

    async def aclose(self) -> None:
        await self._refreshing.aclose()
        await self._registry.aclose()
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._client = None
        if self._http is not None:
            self._http.session.close()
            self._http = None

    # -- the Artifact Registry repository ------------------------------------------------

    async def start(self) -> None:
        """Check (and, when configured, create) the Artifact Registry repository now.

        Raises :class:`RegistryError` with what to grant or configure when that fails.
        """
        if self._repository_ready:
            return
        async with self._repository_lock:
            if self._repository_ready:
                return
            if self._failure is not None:
                failed_at, error = self._failure
                wait = self._failure_backoff - (self._clock() - failed_at)
                if wait > 0:
                    raise RegistryError(f"{error} (asked again in {wait:.0f}s)")
            try:
                await self._check_repository()
            except RegistryError as exc:
                self._failure = (self._clock(), exc)
                raise
            self._failure = None
            self._repository_ready = True

    async def _check_repository(self) -> None:
        try:
            repository = await self._api(self._get_repository, self._api_timeout)
        except api_exceptions.NotFound:
            repository = None
        except api_exceptions.PermissionDenied as exc:
            raise RegistryError(
                f"Artifact Registry refused to read {self.repository_name}: {_message(exc)}; "
                f"{_GET_HINT}"
            ) from exc
        if repository is not None:
            self._check_existing(repository)
            return
        if not self.config.create_repository:
            raise RegistryError(
                f"Artifact Registry repository {self.repository_name} does not exist: create it "
                f"(gcloud artifacts repositories create {self.config.repository_id} "
                f"--repository-format=docker --location={self.config.location} "
                f"--project={self.config.project_id}) or set target.gcp.createRepository: true"
            )
        try:
            await self._api(self._create_repository, self._create_timeout + self._api_timeout)
        except api_exceptions.AlreadyExists:
            log.info("gar_repository_exists", repository=self.repository_name)
            return  # created meanwhile (another swapper replica): just as good
        except api_exceptions.PermissionDenied as exc:
            raise RegistryError(
                f"Artifact Registry refused to create {self.repository_name}: {_message(exc)}; "
                f"{_CREATE_HINT}"
            ) from exc
        log.info("gar_repository_created", repository=self.repository_name)

    def _check_existing(self, repository: artifactregistry_v1.Repository) -> None:
        kind = artifactregistry_v1.Repository
        if repository.format_ != kind.Format.DOCKER:
            raise RegistryError(
                f"Artifact Registry repository {self.repository_name} holds "
                f"{repository.format_.name} packages, not Docker images"
            )
        if repository.mode not in (kind.Mode.MODE_UNSPECIFIED, kind.Mode.STANDARD_REPOSITORY):
            raise RegistryError(
                f"Artifact Registry repository {self.repository_name} is a "
                f"{repository.mode.name}: images cannot be pushed to it; use a standard one"
            )
        if not self.config.create_repository:
            return
        differs = []
        if any(repository.labels.get(k) != v for k, v in self.config.labels.items()):
            differs.append("labels")
        if self.config.description and repository.description != self.config.description:
            differs.append("description")
        if repository.docker_config.immutable_tags != self.config.immutable_tags:
            differs.append("immutableTags")
        if differs:
            log.warning(
                "gar_repository_settings_differ",
                repository=self.repository_name,
                keys=differs,
                reason="swapper sets these only when it creates the repository; it does not "
                "change an existing one",
            )

    def _get_repository(
        self, client: artifactregistry_v1.ArtifactRegistryClient
    ) -> artifactregistry_v1.Repository:
        return client.get_repository(
            name=self.repository_name, retry=self._retry(), timeout=self._api_timeout
        )

    def _create_repository(self, client: artifactregistry_v1.ArtifactRegistryClient) -> None:
        kind = artifactregistry_v1.Repository
        repository = kind(
            format_=kind.Format.DOCKER,
            mode=kind.Mode.STANDARD_REPOSITORY,
            description=self.config.description,
            labels=dict(self.config.labels),
            docker_config=kind.DockerRepositoryConfig(immutable_tags=self.config.immutable_tags),
        )
        operation = client.create_repository(
            parent=f"projects/{self.config.project_id}/locations/{self.config.location}",
            repository=repository,
            repository_id=self.config.repository_id,
            retry=self._retry(),
            timeout=self._api_timeout,
        )
        wait = polling.DEFAULT_POLLING.with_delay(initial=0.5, maximum=5.0)
        operation.result(timeout=self._create_timeout, polling=wait)  # type: ignore[no-untyped-call]

    def _retry(self) -> api_retry.Retry:
        """Transient API failures are tried again within the call's deadline (Get is
        idempotent; a repeated Create ends as AlreadyExists, which counts as success)."""
        return api_retry.Retry(
            predicate=api_retry.if_exception_type(api_exceptions.ServiceUnavailable),
            initial=0.25,
            maximum=2.0,
            multiplier=2.0,
            timeout=self._api_timeout,
        )

    async def _api(
        self,
        call: Callable[[artifactregistry_v1.ArtifactRegistryClient], _T],
        deadline: float,
        passthrough: tuple[type[Exception], ...] = (),
    ) -> _T:
        """Run a blocking client call in a thread, with a fresh token, under ``deadline``.
        NotFound, AlreadyExists, PermissionDenied and ``passthrough`` reach the caller as they
        are; other API failures raise :class:`RegistryError`."""
        await self.pull_credentials()
        client = self._api_client()
        try:
            return await asyncio.wait_for(asyncio.to_thread(call, client), deadline)
        except TimeoutError:
            raise RegistryError(
                f"Artifact Registry API did not answer within {deadline:g}s "
                f"({self.repository_name})"
            ) from None
        except (
            api_exceptions.NotFound,
            api_exceptions.AlreadyExists,
            api_exceptions.PermissionDenied,
        ):
            raise  # the caller knows what these mean for its call
        except passthrough:
            raise
        except api_exceptions.Unauthenticated as exc:
            raise RegistryError(
                f"Artifact Registry did not accept swapper's Google credentials: {_message(exc)}"
            ) from exc
        except api_exceptions.GoogleAPIError as exc:
            raise RegistryError(
                f"Artifact Registry API call for {self.repository_name} failed: {_message(exc)}"
            ) from exc

    def _api_client(self) -> artifactregistry_v1.ArtifactRegistryClient:
        if self._client is None:
            address, plaintext = _api_address(self.config.endpoint_override)
            if plaintext:
                channel_credentials = grpc.local_channel_credentials(
                    grpc.LocalConnectionType.LOCAL_TCP
                )
            else:
                channel_credentials = grpc.ssl_channel_credentials()
            self._channel = grpc.secure_channel(
                address,
                grpc.composite_channel_credentials(
                    channel_credentials,
                    grpc.metadata_call_credentials(_TokenPlugin(self._credentials)),
                ),
                options=[
                    ("grpc.max_send_message_length", -1),
                    ("grpc.max_receive_message_length", -1),
                ],
            )
            transport = ArtifactRegistryGrpcTransport(channel=self._channel)
            self._client = artifactregistry_v1.ArtifactRegistryClient(transport=transport)
        return self._client

    # -- RegistryAdmin -------------------------------------------------------------------

    def _base_path(self) -> str:
        """What every repository path of this target starts with: ``project/repository/``."""
        return f"{self.config.project_id}/{self.config.repository_id}/"

    def _package(self, repository: str) -> str:
        """The package resource name of the repository path ``repository``."""
        base = self._base_path()
        if not repository.startswith(base) or repository == base:
            raise RegistryError(f"{repository} is not an image path in {self.repository_name}")
        return f"{self.repository_name}/packages/{quote(repository[len(base) :], safe='')}"

    async def _list(
        self, what: str, fetch: Callable[[artifactregistry_v1.ArtifactRegistryClient], _T]
    ) -> _T | None:
        """One page: ``fetch(client)`` in a thread; None when the parent is gone."""
        try:
            return await self._api(fetch, self._api_timeout)
        except api_exceptions.NotFound:
            return None
        except api_exceptions.PermissionDenied as exc:
            raise RegistryError(
                f"Artifact Registry refused to list {what}: {_message(exc)}; {_LIST_HINT}"
            ) from exc

    async def _pages(
        self,
        what: str,
        method: str,
        request: Callable[[str], Any],
        key: str,
    ) -> AsyncIterator[list[Any]]:
        """The ``key`` lists of ``method``'s pages (``request(page_token)`` builds each
        request), following ``next_page_token``; nothing when the parent does not exist."""
        token = ""
        while True:

            def fetch(
                client: artifactregistry_v1.ArtifactRegistryClient, token: str = token
            ) -> tuple[list[Any], str]:
                pager = getattr(client, method)(
                    request=request(token), retry=self._retry(), timeout=self._api_timeout
                )
                # A pager's attributes are those of its first response: one RPC, one page.
                return list(getattr(pager, key)), str(pager.next_page_token)

            page = await self._list(what, fetch)
            if page is None:
                return
            items, token = page
            yield items
            if not token:
                return

    async def list_repositories(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[str]:
        size = check_page_size(page_size)
        base = self._base_path()
        pages = self._pages(
            f"the packages of {self.repository_name}",
            "list_packages",
            lambda token: artifactregistry_v1.ListPackagesRequest(
                parent=self.repository_name, page_size=size, page_token=token
            ),
            "packages",
        )
        async for page in pages:
            for package in page:
                path = unquote(str(package.name).rpartition("/packages/")[2])
                if path and under_prefix(path, self.config.prefix):
                    yield base + path

    async def list_tags(
        self, repository: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[Tag]:
        size = check_page_size(page_size)
        package = self._package(repository)
        pages = self._pages(
            f"the tags of {package}",
            "list_tags",
            lambda token: artifactregistry_v1.ListTagsRequest(
                parent=package, page_size=size, page_token=token
            ),
            "tags",
        )
        async for page in pages:
            for tag in page:
                yield Tag(_last(tag.name, "/tags/"), _last(tag.version, "/versions/"))

    async def list_manifests(
        self, repository: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[StoredManifest]:
        size = check_page_size(page_size)
        package = self._package(repository)
        pages = self._pages(
            f"the versions of {package}",
            "list_versions",
            lambda token: artifactregistry_v1.ListVersionsRequest(
                parent=package,
                page_size=size,
                page_token=token,
                view=artifactregistry_v1.VersionView.FULL,
            ),
            "versions",
        )
        async for page in pages:
            for version in page:
                created = version.create_time
                yield StoredManifest(
                    _last(version.name, "/versions/"),
                    tuple(sorted(_last(tag.name, "/tags/") for tag in version.related_tags)),
                    created if isinstance(created, datetime) else None,
                )

    async def delete_tag(self, repository: str, tag: str) -> bool:
        name = f"{self._package(repository)}/tags/{quote(tag, safe='')}"

        def delete(client: artifactregistry_v1.ArtifactRegistryClient) -> None:
            client.delete_tag(name=name, retry=self._retry(), timeout=self._api_timeout)

        return await self._delete(name, delete, self._api_timeout)

    async def delete_repository(self, repository: str) -> bool:
        raise DeleteRefused(
            f"Artifact Registry package {repository} is kept: its delete takes every version "
            "with it, so one pushed between a check and the delete would be lost"
        )

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        name = f"{self._package(repository)}/versions/{digest}"

        def delete(client: artifactregistry_v1.ArtifactRegistryClient) -> None:
            operation = client.delete_version(
                request=artifactregistry_v1.DeleteVersionRequest(name=name, force=True),
                retry=self._retry(),
                timeout=self._api_timeout,
            )
            wait = polling.DEFAULT_POLLING.with_delay(initial=0.5, maximum=5.0)
            operation.result(timeout=self._create_timeout, polling=wait)  # type: ignore[no-untyped-call]

        return await self._delete(name, delete, self._create_timeout + self._api_timeout)

    async def _delete(
        self,
        name: str,
        delete: Callable[[artifactregistry_v1.ArtifactRegistryClient], None],
        deadline: float,
    ) -> bool:
        try:
            await self._api(delete, deadline, (api_exceptions.FailedPrecondition,))
        except api_exceptions.NotFound:
            return False
        except (api_exceptions.PermissionDenied, api_exceptions.FailedPrecondition) as exc:
            raise DeleteRefused(
                f"Artifact Registry refused to delete {name}: {_message(exc)}; {_DELETE_HINT}"
            ) from exc
        return True

    # -- the access token ----------------------------------------------------------------

    def _credentials(self) -> google.auth.credentials.Credentials:
        assert self._google_credentials is not None, "credentials are loaded before any call"
        return self._google_credentials

    async def _refresh(self) -> Credentials:
        try:
            token = await asyncio.wait_for(
                asyncio.to_thread(self._refresh_blocking), self._token_timeout
            )
        except TimeoutError:
            raise RegistryError(
                f"no Google access token within {self._token_timeout:g}s (metadata server or "
                "token endpoint unreachable?)"
            ) from None
        self._token, self._renew_at = token
        return self._token

    def _refresh_blocking(self) -> tuple[Credentials, float]:
        try:
            if self._google_credentials is None:
                self._google_credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
            if self._http is None:
                self._http = _TimedRequest(self._token_timeout)
            credentials = self._google_credentials
            credentials.refresh(self._http)  # type: ignore[no-untyped-call]
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise RegistryError(
                f"no Google credentials: {exc} (on GKE, enable Workload Identity and annotate "
                "swapper's ServiceAccount with iam.gke.io/gcp-service-account)"
            ) from None
        except google.auth.exceptions.GoogleAuthError as exc:
            raise RegistryError(f"refreshing the Google access token failed: {exc}") from None
        if not credentials.token:
            raise RegistryError("refreshing the Google access token gave no token")
        expiry: datetime | None = credentials.expiry
        now = self._clock()
        if expiry is None:
            return Credentials(TOKEN_USERNAME, credentials.token), now + self._renew_before
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)  # google-auth keeps expiries in naive UTC
        remaining = max(0.0, expiry.timestamp() - time.time())
        renew_at = now + remaining - min(self._renew_before, remaining / 2)
        return Credentials(TOKEN_USERNAME, credentials.token, expires_at=expiry), renew_at


class _TimedRequest(google.auth.transport.requests.Request):
    """google-auth's HTTP transport with a default timeout (its own is 120 s)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        return super().__call__(  # type: ignore[no-untyped-call]
            url, method, body, headers, timeout=timeout or self._timeout, **kwargs
        )


def _api_address(override: str) -> tuple[str, bool]:
    """``(host:port, plaintext)`` of the Artifact Registry API."""
    if not override:
        return f"{DEFAULT_API_HOST}:443", False
    scheme, _, address = override.rpartition("://")
    if ":" not in address.rsplit("]", 1)[-1]:
        address += ":443" if scheme != "http" else ":80"
    return address, scheme == "http"


def _last(name: str, marker: str) -> str:
    """The resource id after ``marker`` in ``name`` (``%2F`` and the like decoded)."""
    return unquote(str(name).rpartition(marker)[2])


def _message(exc: api_exceptions.GoogleAPIError) -> str:
    return str(getattr(exc, "message", None) or exc)


def from_config(config: Config, hosts: dict[str, HostConfig]) -> GARTarget:
    """The target of ``target.gcp`` (see :mod:`swapper.targets.factory`)."""
    assert config.target.gcp is not None
    return GARTarget(config.target.gcp, hosts=hosts)


def client_hosts(config: Config, hosts: dict[str, HostConfig]) -> dict[str, HostConfig]:
    """Nothing beyond ``mirror.hosts``."""
    return {}
