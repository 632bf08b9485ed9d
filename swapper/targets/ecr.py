"""Amazon ECR as the target (``target.type: aws``).

Images go to ``<registryId or accountId>.dkr.ecr.<region>.amazonaws.com[/prefix]``
(``.amazonaws.com.cn`` in ``cn-`` regions), or under ``target.aws.registryHost`` when that is set
(a pull-through mirror, or a test registry). The ECR API is reached with boto3:

- **Repositories** (:meth:`ECRTarget.ensure_repository`): ECR does not create a repository on
  push, so it is created before the first copy with ``ecrOptions`` (tags, tag mutability, scan
  on push, AES256 or KMS encryption); ``RepositoryAlreadyExistsException`` is success. The
  ``accessPolicy`` and ``lifecyclePolicy`` are applied to new repositories and *reconciled* on
  existing ones: the current document is read and compared as JSON (whitespace and key order
  do not count), and written only when it differs. A repository ensured less than
  ``repository_ttl`` ago costs no API call; after that it is checked again, so drift (a policy
  changed or removed behind swapper's back) is repaired by the next copy into it. Concurrent
  copies into one repository share one check; the last 10,000 repositories ensured are
  remembered. Tag mutability, scanning and encryption are creation settings and are not
  changed on existing repositories.
- **Existence** (:meth:`ECRTarget.image_exists`): ``DescribeImages`` by digest when the
  reference has one (what the kubelet pulls), else by tag. Not cached here (see
  :mod:`swapper.targets.cache`).
- **Credentials** (:meth:`ECRTarget.pull_credentials`): ``GetAuthorizationToken`` decoded to
  ``AWS`` and a password, kept until half its lifetime has passed (6 h of an ECR token's 12 h),
  then renewed; concurrent callers share one renewal, and if a renewal fails while the current
  token is still valid, the current token is served and the renewal is tried again a minute
  later.
  The same credentials push images (the copy engine) and pull them (the target pull secret).
- **AWS credentials**: the standard chain (environment, IRSA web identity, ECS/EC2 instance
  role); nothing needs static keys. With ``role``, that role is assumed through STS with
  botocore's own refreshing machinery (:class:`botocore.credentials.AssumeRoleCredentialFetcher`
  behind :class:`~botocore.credentials.DeferredRefreshableCredentials`), renewed before the
  session expires. ``endpointUrl`` overrides the ECR API endpoint; STS follows botocore's
  standard ``AWS_ENDPOINT_URL_STS`` setting.
- **Never blocking the event loop**: every boto3 call (and the first credential lookup, which
  may ask the instance metadata service) runs in the target's own small thread pool, with
  connect/read timeouts and botocore's ``standard`` retry mode (throttling and 5xx retried with
  backoff). Any failure surfaces as :class:`~swapper.errors.RegistryError` naming the operation
  and AWS's error code, never credentials.
- **Admin** (:class:`~swapper.targets.admin.RegistryAdmin`): repositories are
  ``DescribeRepositories`` pages filtered to ``prefix``; tags and manifests are
  ``DescribeImages`` pages (``TAGGED`` only for tags; manifests carry ``imagePushedAt``);
  ``delete_tag`` is ``BatchDeleteImage`` by ``imageTag`` (ECR untags, and deletes the image
  with its last tag) and ``delete_manifest`` by ``imageDigest``. Access denied, or an image a
  manifest list still references, raises :class:`~swapper.errors.DeleteRefused`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import dataclasses
import datetime as dt
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from swapper.aio import SingleFlight, TTLMap
from swapper.config import AWSRegistry, Config
from swapper.credentials import Credentials
from swapper.errors import DeleteRefused, RegistryError
from swapper.images import parse
from swapper.logs import get_logger
from swapper.oci import HostConfig
from swapper.targets.admin import (
    DEFAULT_PAGE_SIZE,
    StoredManifest,
    Tag,
    check_page_size,
    under_prefix,
)
from swapper.targets.base import UnderEndpoint

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

log = get_logger("swapper.targets")

TOKEN_LIFETIME = 12 * 3600.0
"""How long ECR authorization tokens last; assumed when a token's ``expiresAt`` is unusable."""

ROLE_SESSION_NAME = "swapper"

RENEWAL_RETRY = 60.0
"""Seconds between renewal attempts while the current token still works."""

ENSURED_REPOSITORIES = 10_000
"""Repositories remembered as ensured (the least recently used forgotten, then checked again)."""

_THROTTLED = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
    }
)
_DENIED = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "KMSException",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Token:
    credentials: Credentials
    renew_at: float  # clock() time from which the next call renews it
    expires_at: float  # clock() time it stops working


class _AssumeRoleProvider(CredentialProvider):
    """Credentials of ``role``, assumed with the standard chain's credentials and renewed by
    botocore before they expire. Nothing is fetched until the first API call needs them."""

    METHOD = "swapper-assume-role"
    CANONICAL_NAME = "custom-swapper-assume-role"

    def __init__(self, role_arn: str, region: str, config: BotoConfig) -> None:
        super().__init__()
        self._role_arn = role_arn
        self._source = botocore.session.Session()  # the standard chain: env, IRSA, instance
        self._client_creator = functools.partial(
            self._source.create_client, region_name=region, config=config
        )
        self._fetcher: AssumeRoleCredentialFetcher | None = None
        self._lock = threading.Lock()

    def load(self) -> DeferredRefreshableCredentials:
        return DeferredRefreshableCredentials(refresh_using=self._fetch, method=self.METHOD)

    def _fetch(self) -> dict[str, Any]:
        with self._lock:
            if self._fetcher is None:
                source = self._source.get_credentials()
                if source is None:
                    raise NoCredentialsError()
                self._fetcher = AssumeRoleCredentialFetcher(
                    self._client_creator,
                    source,
                    self._role_arn,
                    extra_args={"RoleSessionName": ROLE_SESSION_NAME},
                )
            fetcher = self._fetcher
        credentials: dict[str, Any] = fetcher.fetch_credentials()
        return credentials


def _operation_name(method: str) -> str:
    return "".join(part.title() for part in method.split("_"))


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _registry_error(operation: str, exc: Exception) -> RegistryError:
    if isinstance(exc, ClientError):
        code = _error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", "")).strip()
        text = f"ECR {operation} failed: {code}" + (f": {message}" if message else "")
        if code in _DENIED:
            text += " (check the IAM permissions swapper runs with: docs/ecr.md)"
        elif code in _THROTTLED:
            text += " (throttled by AWS; botocore's retries ran out)"
        return RegistryError(text)
    if isinstance(exc, NoCredentialsError):
        return RegistryError(
            f"ECR {operation} failed: no AWS credentials found (IRSA web identity, instance "
            "role or AWS_* environment variables)"
        )
    return RegistryError(f"ECR {operation} failed: {type(exc).__name__}: {exc}")


def _same_json(current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    try:
        return bool(json.loads(current) == json.loads(wanted))
    except ValueError:
        return False


def _decode_token(token: str) -> tuple[str, str]:
    try:
        text = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise RegistryError(
            "ECR GetAuthorizationToken returned a token that is not base64"
        ) from None
    username, sep, password = text.partition(":")
    if not sep or not username or not password:
        raise RegistryError("ECR GetAuthorizationToken returned a token that is not USER:PASSWORD")
    return username, password


class ECRTarget(UnderEndpoint):
    """An ECR registry as the mirror. See the module docstring for the behaviour.

    ``repository_ttl``: seconds an ensured repository is trusted before it is checked (and its
    policies reconciled) again. ``clock``: seconds since the epoch (tests pass a fake).
    """

    config: AWSRegistry

    def __init__(
        self,
        config: AWSRegistry,
        *,
        repository_ttl: float = 900.0,
        clock: Callable[[], float] = time.time,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        max_attempts: int = 4,
        max_workers: int = 8,
    ) -> None:
        self.config = config
        self.repository_ttl = repository_ttl
        self._clock = clock
        self._registry_id = config.registry_id or config.account_id
        options = config.ecr_options
        self._access_policy = options.access_policy or config.access_policy
        self._lifecycle_policy = options.lifecycle_policy or config.lifecycle_policy
        self._boto_config = BotoConfig(
            region_name=config.region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            max_pool_connections=max_workers,
            user_agent_extra="swapper",
        )
        self._client: ECRClient | None = None
        self._client_lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="swapper-ecr"
        )
        self._closed = False
        # repositories trusted for repository_ttl; the least recently used forgotten first
        self._ensured: TTLMap[str, bool] = TTLMap(ENSURED_REPOSITORIES, clock)
        self._ensuring: SingleFlight[str, None] = SingleFlight()
        self._token: _Token | None = None
        self._renewal: SingleFlight[str, Credentials] = SingleFlight()  # one key: "token"

    # -- the boto3 client, used only from the thread pool ----------------------------------------

    @property
    def client(self) -> ECRClient:
        """The boto3 ECR client (created on first use; creating it may resolve credentials,
        which can block: swapper only touches it from its thread pool)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> ECRClient:
        session = botocore.session.Session()  # the standard chain: env, IRSA, instance role
        if self.config.role:
            provider = _AssumeRoleProvider(self.config.role, self.config.region, self._boto_config)
            session.register_component("credential_provider", CredentialResolver([provider]))
        client = boto3.session.Session(botocore_session=session).client(
            "ecr",
            region_name=self.config.region,
            endpoint_url=self.config.endpoint_url or None,
            config=self._boto_config,
        )
        return client

    def _invoke(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = getattr(self.client, method)(**params)
        return response

    async def _api(
        self,
        method: str,
        tolerate: Collection[str] = (),
        refuse: Collection[str] = (),
        **params: Any,
    ) -> dict[str, Any] | None:
        """Call ``method`` in the thread pool. An AWS error whose code is in ``tolerate`` gives
        None, one in ``refuse`` raises :class:`DeleteRefused`; any other failure raises
        :class:`RegistryError`."""
        operation = _operation_name(method)
        if self._closed:
            raise RegistryError(f"ECR {operation}: the target is closed")
        loop = asyncio.get_running_loop()
        try:
            call = loop.run_in_executor(
                self._executor, functools.partial(self._invoke, method, params)
            )
        except RuntimeError as exc:  # the pool was shut down under us
            raise RegistryError(f"ECR {operation}: the target is closed") from exc
        try:
            return await call
        except ClientError as exc:
            if _error_code(exc) in tolerate:
                return None
            if _error_code(exc) in refuse:
                raise DeleteRefused(str(_registry_error(operation, exc))) from exc
            raise _registry_error(operation, exc) from exc
        except BotoCoreError as exc:
            raise _registry_error(operation, exc) from exc

    # -- TargetRegistry ------------------------------------------------------------------------

    async def image_digest(self, target: str) -> str | None:
        ref = parse(target)
        image_id = {"imageDigest": ref.digest} if ref.digest else {"imageTag": ref.tag or "latest"}
        response = await self._api(
            "describe_images",
            tolerate=("ImageNotFoundException", "RepositoryNotFoundException"),
            registryId=self._registry_id,
            repositoryName=ref.path,
            imageIds=[image_id],
        )
        details = (response or {}).get("imageDetails") or ()
        return str(details[0].get("imageDigest") or "") if details else None

    async def ensure_repository(self, repository: str) -> None:
        if self._ensured.get(repository):
            return
        await self._ensuring.do(repository, lambda: self._ensure(repository))

    async def _ensure(self, repository: str) -> None:
        created = await self._create(repository)
        if created:
            log.info("ecr_repository_created", repository=repository)
            if self._access_policy:
                await self._set_access_policy(repository)
            if self._lifecycle_policy:
                await self._set_lifecycle_policy(repository)
        else:
            await self._reconcile(repository)
        self._ensured.set(repository, True, self.repository_ttl)

    async def _create(self, repository: str) -> bool:
        """True when created, False when it already existed."""
        options = self.config.ecr_options
        encryption: dict[str, str] = {
            "encryptionType": options.encryption_configuration.encryption_type
        }
        if options.encryption_configuration.kms_key:
            encryption["kmsKey"] = options.encryption_configuration.kms_key
        params: dict[str, Any] = {
            "registryId": self._registry_id,
            "repositoryName": repository,
            "imageTagMutability": options.image_tag_mutability,
            "imageScanningConfiguration": {
                "scanOnPush": options.image_scanning_configuration.image_scan_on_push
            },
            "encryptionConfiguration": encryption,
        }
        if options.tags:
            params["tags"] = [{"Key": tag.key, "Value": tag.value} for tag in options.tags]
        response = await self._api(
            "create_repository", tolerate=("RepositoryAlreadyExistsException",), **params
        )
        return response is not None

    async def _reconcile(self, repository: str) -> None:
        if self._access_policy:
            current = await self._api(
                "get_repository_policy",
                tolerate=("RepositoryPolicyNotFoundException",),
                registryId=self._registry_id,
                repositoryName=repository,
            )
            text = current.get("policyText") if current else None
            if not _same_json(text, self._access_policy):
                log.info("ecr_policy_drift", repository=repository, policy="access")
                await self._set_access_policy(repository)
        if self._lifecycle_policy:
            current = await self._api(
                "get_lifecycle_policy",
                tolerate=("LifecyclePolicyNotFoundException",),
                registryId=self._registry_id,
                repositoryName=repository,
            )
            text = current.get("lifecyclePolicyText") if current else None
            if not _same_json(text, self._lifecycle_policy):
                log.info("ecr_policy_drift", repository=repository, policy="lifecycle")
                await self._set_lifecycle_policy(repository)

    async def _set_access_policy(self, repository: str) -> None:
        await self._api(
            "set_repository_policy",
            registryId=self._registry_id,
            repositoryName=repository,
            policyText=self._access_policy,
        )

    async def _set_lifecycle_policy(self, repository: str) -> None:
        await self._api(
            "put_lifecycle_policy",
            registryId=self._registry_id,
            repositoryName=repository,
            lifecyclePolicyText=self._lifecycle_policy,
        )

    async def pull_credentials(self) -> Credentials:
        token = self._token
        now = self._clock()
        if token is not None and now < token.renew_at:
            return token.credentials
        try:
            return await self._renewal.do("token", self._fetch_token)
        except RegistryError as exc:
            now = self._clock()
            if token is not None and now < token.expires_at - RENEWAL_RETRY:
                log.warning("ecr_token_renewal_failed", error=str(exc), using="current token")
                # Ask again in a while, not on every call (AWS may be throttling already).
                self._token = dataclasses.replace(token, renew_at=now + RENEWAL_RETRY)
                return token.credentials
            raise

    async def _fetch_token(self) -> Credentials:
        fetched = self._clock()
        response = await self._api("get_authorization_token", registryIds=[self._registry_id])
        data = (response or {}).get("authorizationData") or []
        if not data or not data[0].get("authorizationToken"):
            raise RegistryError("ECR GetAuthorizationToken returned no authorization data")
        username, password = _decode_token(data[0]["authorizationToken"])
        expires_at = data[0].get("expiresAt")
        expires = expires_at.timestamp() if isinstance(expires_at, dt.datetime) else 0.0
        if expires <= fetched:
            # Already expired by the local clock: the clock is off, or the answer is wrong.
            # Fetching again would give the same; count on the documented lifetime instead.
            log.warning("ecr_token_expiry_unusable", expires_at=str(expires_at))
            expires = fetched + TOKEN_LIFETIME
        expiry = dt.datetime.fromtimestamp(expires, dt.UTC)
        credentials = Credentials(username, password, expires_at=expiry)
        self._token = _Token(credentials, fetched + (expires - fetched) / 2, expires)
        log.info("ecr_token_renewed", expires_at=expiry.isoformat())
        return credentials

    # -- RegistryAdmin -------------------------------------------------------------------

    async def _pages(
        self, method: str, key: str, tolerate: Collection[str] = (), **params: Any
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The ``key`` lists of ``method``'s pages, following ``nextToken``."""
        token = ""
        while True:
            extra = {"nextToken": token} if token else {}
            response = await self._api(
                method, tolerate, registryId=self._registry_id, **params, **extra
            )
            if response is None:
                return
            yield list(response.get(key) or ())
            token = str(response.get("nextToken") or "")
            if not token:
                return

    async def list_repositories(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[str]:
        size = check_page_size(page_size)
        async for page in self._pages("describe_repositories", "repositories", maxResults=size):
            for repository in page:
                name = str(repository.get("repositoryName") or "")
                if name and under_prefix(name, self.config.prefix):
                    yield name

    def _images(
        self, repository: str, size: int, status: str
    ) -> AsyncIterator[list[dict[str, Any]]]:
        return self._pages(
            "describe_images",
            "imageDetails",
            tolerate=("RepositoryNotFoundException",),
            repositoryName=repository,
            maxResults=size,
            filter={"tagStatus": status},
        )

    async def list_tags(
        self, repository: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[Tag]:
        async for page in self._images(repository, check_page_size(page_size), "TAGGED"):
            for image in page:
                for tag in image.get("imageTags") or ():
                    yield Tag(str(tag), str(image["imageDigest"]))

    async def list_manifests(
        self, repository: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[StoredManifest]:
        async for page in self._images(repository, check_page_size(page_size), "ANY"):
            for image in page:
                pushed = image.get("imagePushedAt")
                yield StoredManifest(
                    str(image["imageDigest"]),
                    tuple(sorted(str(tag) for tag in image.get("imageTags") or ())),
                    pushed if isinstance(pushed, dt.datetime) else None,
                )

    async def delete_tag(self, repository: str, tag: str) -> bool:
        return await self._delete(repository, {"imageTag": tag})

    async def delete_repository(self, repository: str) -> bool:
        """``DeleteRepository`` without ``force``: ECR refuses it while any image is there."""
        response = await self._api(
            "delete_repository",
            tolerate=("RepositoryNotFoundException", "RepositoryNotEmptyException"),
            refuse=_DENIED,
            registryId=self._registry_id,
            repositoryName=repository,
            force=False,
        )
        return response is not None

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        return await self._delete(repository, {"imageDigest": digest})

    async def _delete(self, repository: str, image_id: dict[str, str]) -> bool:
        """``BatchDeleteImage`` of one image id: True when deleted, False when absent."""
        response = await self._api(
            "batch_delete_image",
            tolerate=("RepositoryNotFoundException",),
            refuse=_DENIED,
            registryId=self._registry_id,
            repositoryName=repository,
            imageIds=[image_id],
        )
        if response is None:
            return False
        if response.get("imageIds"):
            return True
        for failure in response.get("failures") or ():
            code = str(failure.get("failureCode") or "")
            reason = str(failure.get("failureReason") or "")
            if code in ("ImageNotFound", "ImageTagDoesNotMatchDigest"):
                return False
            text = f"ECR BatchDeleteImage of {repository} {image_id} failed: {code}: {reason}"
            if code == "ImageReferencedByManifestList":
                raise DeleteRefused(f"{text} (delete the manifest list first)")
            raise RegistryError(text)
        return False

    async def aclose(self) -> None:
        self._closed = True
        await asyncio.gather(self._ensuring.aclose(), self._renewal.aclose())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, functools.partial(self._executor.shutdown, wait=True, cancel_futures=True)
        )
        with self._client_lock:
            if self._client is not None:
                self._client.close()


def from_config(config: Config, hosts: dict[str, HostConfig]) -> ECRTarget:
    """The target of ``target.aws`` (see :mod:`swapper.targets.factory`)."""
    assert config.target.aws is not None
    return ECRTarget(config.target.aws)


def client_hosts(config: Config, hosts: dict[str, HostConfig]) -> dict[str, HostConfig]:
    """ECR takes blobs in parts of at least 5 MiB: its host uploads in chunks."""
    host = config.target.endpoint.split("/", 1)[0].lower()
    return {host: dataclasses.replace(hosts.get(host, HostConfig()), upload="chunked")}
