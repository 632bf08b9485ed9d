"""The OCI distribution API: hosts, authentication, retries, manifests and blobs.

:class:`RegistryClient` owns one connection pool per registry host (each host may have its own
TLS settings) and the token cache. :meth:`RegistryClient.repository` gives a
:class:`Repository` handle bound to one repository, the actions needed on it (pull, or pull and
push) and the credentials to use; every operation the copy engine needs is a method there.

Requests without a body, or with a body held in memory (manifests), are retried here on
connection errors, timeouts, 5xx and 429. A blob download that receives nothing for
``blob_idle_timeout`` seconds in the middle of its body times out (a transient failure) rather
than waiting out the whole read timeout. A blob upload streams a body that cannot be replayed,
so its failures surface as :class:`TransientCopyError` and the copy engine restarts that blob.
Every failure is a :class:`~swapper.errors.CopyError` whose ``reason`` names the cause.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Container, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import orjson

from swapper.credentials import Credentials
from swapper.errors import (
    CopyError,
    CopyReason,
    RedirectError,
    TimeoutException,
    TransientCopyError,
    TransportError,
)
from swapper.images import DOCKER_HUB, ImageReference, parse
from swapper.oci._auth import (
    ANONYMOUS,
    Challenge,
    CredentialsProvider,
    TokenCache,
    parse_challenge,
)
from swapper.oci._http import (
    HTTPClient,
    Response,
    Timeout,
    Transport,
    environment_proxy_url,
)
from swapper.oci._manifests import (
    MANIFEST_ACCEPT,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    Descriptor,
    Manifest,
    check_digest,
    digest_of,
    parse_manifest,
)
from swapper.oci._retry import TRANSIENT_STATUSES, RetryPolicy, retry_after
from swapper.oci._trust import client_context

MiB = 1024 * 1024
MIN_CHUNK_SIZE = 5 * MiB  # ECR refuses smaller upload parts (except the last)
DEFAULT_TIMEOUT = Timeout(connect=10.0, read=60.0, write=60.0)
DEFAULT_BLOB_IDLE_TIMEOUT = 15.0  # the config's mirror.blobIdleTimeout default
USER_AGENT = "swapper/0.1"
_DOCKER_HUB_API = "registry-1.docker.io"
_ERROR_BODY_LIMIT = 8192
MAX_LISTING_BYTES = 16 * MiB
"""The largest page of a catalog or tag listing read (a registry that ignores ``n`` sends
everything in one answer)."""
_NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?', re.IGNORECASE)

UploadMode = Literal["monolithic", "chunked"]


@dataclass(frozen=True, slots=True)
class HostConfig:
    """How to reach one registry host.

    ``plain_http``: speak HTTP instead of HTTPS (what the config's ``insecure: true`` means).
    ``verify_tls``: ``False`` accepts any certificate (HTTPS without verification).
    ``ca_file``: a PEM bundle trusted in addition to the system's CAs.
    ``upload``: ``monolithic`` sends a blob in one ``PUT``; ``chunked`` sends ``PATCH`` parts
    of ``chunk_size`` bytes (at least 5 MiB, as ECR requires) and a closing ``PUT``.
    ``ssl_context``: a TLS context to use as it is (``verify_tls`` and ``ca_file`` are then not
    read), for a caller that built it ahead: loading the system's CAs takes about 20 ms, which
    ``swapper mirror`` spends in a thread while it is still importing.
    """

    plain_http: bool = False
    verify_tls: bool = True
    ca_file: str | None = None
    upload: UploadMode = "monolithic"
    chunk_size: int = 16 * MiB
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.chunk_size < MIN_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be at least {MIN_CHUNK_SIZE} bytes (5 MiB)")
        if self.upload not in ("monolithic", "chunked"):
            raise ValueError(f"upload must be 'monolithic' or 'chunked', not {self.upload!r}")


@dataclass(frozen=True, slots=True)
class Mount:
    """The answer to a cross-repository mount: mounted, or an upload session to use instead."""

    mounted: bool
    location: str | None = None


class _Host:
    def __init__(self, domain: str, config: HostConfig, client: Transport) -> None:
        self.domain = domain
        self.config = config
        self.client = client
        api_host = _DOCKER_HUB_API if domain == DOCKER_HUB else domain
        self.base_url = f"{'http' if config.plain_http else 'https'}://{api_host}"
        self.challenge: Challenge | None = None
        self.lock = asyncio.Lock()


def tls_context(*, verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
    """The system's CAs plus ``ca_file``; or no verification at all (no CAs loaded then)."""
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return client_context(ca_file)


def _environment_proxy(scheme: str, host: str) -> bool:
    """Whether ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` apply to ``host`` (``NO_PROXY``)."""
    return environment_proxy_url(scheme, host) is not None


def with_params(url: str, params: list[tuple[str, str]]) -> str:
    """``url`` with ``params`` added to its query."""
    parts = urlsplit(url)
    query = urlencode(params)
    return urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))


async def _release(response: Response) -> None:
    """Read what is left of a small body, then close: only a response read to its end lets
    its connection go back to the pool (closing it early closes the connection)."""
    async with response:
        received = 0
        with suppress(TransportError):
            while chunk := await response.read_chunk():
                received += len(chunk)
                if received > _ERROR_BODY_LIMIT:
                    break


def _url(response: Response) -> str:
    return urlunsplit(urlsplit(response.url)._replace(query=""))


async def _error_detail(response: Response) -> str:
    """The registry's error code and message, read from at most a few KiB of body."""
    body = bytearray()
    async with response:
        with suppress(TransportError):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= _ERROR_BODY_LIMIT:
                    break
    try:
        errors = orjson.loads(bytes(body)).get("errors") or []
        first = errors[0]
        return f": {first.get('code', '')} {first.get('message', '')}".rstrip()
    except (orjson.JSONDecodeError, AttributeError, IndexError, KeyError, TypeError):
        return ""


async def status_error(response: Response, what: str) -> CopyError:
    """A CopyError (or TransientCopyError) for a response with an unexpected status."""
    status = response.status_code
    detail = await _error_detail(response)
    message = f"{what}: {response.method} {_url(response)} answered {status}{detail}"
    if status in TRANSIENT_STATUSES:
        reason = CopyReason.RATE_LIMITED if status == 429 else CopyReason.SERVER_ERROR
        return TransientCopyError(message, reason, retry_after(response))
    known = {401: CopyReason.UNAUTHORIZED, 403: CopyReason.DENIED, 404: CopyReason.NOT_FOUND}
    fallback = CopyReason.SERVER_ERROR if status >= 500 else CopyReason.REJECTED
    return CopyError(message, known.get(status, fallback))


def transport_error(exc: TransportError, what: str) -> CopyError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return CopyError(f"{what}: TLS certificate not trusted: {cause}", CopyReason.TLS)
        cause = cause.__cause__ or cause.__context__
    name = type(exc).__name__
    if isinstance(exc, RedirectError):  # the same redirect comes again: not worth a retry
        return CopyError(f"{what}: {exc}", CopyReason.REJECTED)
    reason = CopyReason.TIMEOUT if isinstance(exc, TimeoutException) else CopyReason.CONNECTION
    return TransientCopyError(f"{what}: {name} {exc}".rstrip(), reason)


def _next_link(response: Response) -> str | None:
    """The ``rel="next"`` URL of a paged answer's ``Link`` header (resolved), or None."""
    found = _NEXT_LINK.search(response.headers.get("link") or "")
    return urljoin(response.url, found.group(1)) if found else None


async def _bounded_body(response: Response, limit: int, too_large: CopyError, what: str) -> bytes:
    """The whole body of ``response``; ``too_large`` is raised past ``limit`` bytes."""
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise too_large
    except TransportError as exc:
        raise transport_error(exc, what) from exc
    return bytes(body)


async def _listing(response: Response, what: str, key: str) -> list[str]:
    """The list of strings under ``key`` in a JSON answer of at most MAX_LISTING_BYTES."""
    too_large = CopyError(f"{what}: a page larger than 16 MiB", CopyReason.UNSUPPORTED)
    body = await _bounded_body(response, MAX_LISTING_BYTES, too_large, what)
    try:
        items = orjson.loads(body).get(key) or []
    except (orjson.JSONDecodeError, AttributeError) as exc:
        raise CopyError(f"{what}: the answer is not a JSON object", CopyReason.UNSUPPORTED) from exc
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise CopyError(f"{what}: {key!r} is not a list of names", CopyReason.UNSUPPORTED)
    return items


async def _pages(
    get: Callable[[str], Awaitable[Response]], url: str, what: str, key: str, *, missing_ok: bool
) -> AsyncIterator[list[str]]:
    """The pages of a paged listing (``?n=``), following ``Link: <...>; rel="next"``. A 404
    ends it empty when ``missing_ok``; any other status than 200 raises CopyError."""
    next_url: str | None = url
    while next_url is not None:
        response = await get(next_url)
        if response.status_code == 404 and missing_ok:
            await _release(response)
            return
        async with response:
            if response.status_code != 200:
                raise await status_error(response, what)
            items = await _listing(response, what, key)
        yield items
        following = _next_link(response)
        next_url = following if following != next_url else None


class RegistryClient:
    """Talks to any number of registries; close it with :meth:`aclose` (or ``async with``).

    ``hosts`` maps a registry host as written in image references (``registry.local:5000``,
    ``docker.io``) to its :class:`HostConfig`; other hosts use ``default``. ``credentials`` is
    asked once per repository handle for hosts whose handle has no provider of its own.
    ``timeout`` covers every request; ``blob_idle_timeout`` is the seconds allowed between two
    chunks received while a blob's body streams, when shorter than the read timeout (None: the
    read timeout), so that a stalled download is dropped and tried again sooner.
    ``transport(context)`` makes the :class:`~swapper.oci.Transport` of one registry host (the
    host's TLS context given); default :meth:`http_transport`. A test passes one that injects
    faults, as httpx's ``MockTransport`` does.
    """

    def __init__(
        self,
        *,
        hosts: Mapping[str, HostConfig] | None = None,
        default: HostConfig | None = None,
        credentials: CredentialsProvider | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeout | float = DEFAULT_TIMEOUT,
        max_connections_per_host: int = 32,
        trust_env: bool = True,
        blob_idle_timeout: float | None = DEFAULT_BLOB_IDLE_TIMEOUT,
        transport: Callable[[ssl.SSLContext], Transport] | None = None,
    ) -> None:
        if blob_idle_timeout is not None and not blob_idle_timeout > 0:
            raise ValueError("blob_idle_timeout must be more than 0 seconds (or None)")
        self.blob_idle_timeout = blob_idle_timeout
        self._configs = dict(hosts or {})
        self._default = default or HostConfig()
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self._timeout = Timeout.of(timeout)
        self._max_connections = max_connections_per_host
        self._trust_env = trust_env
        self._hosts: dict[str, _Host] = {}
        self._contexts: dict[tuple[bool, str | None], ssl.SSLContext] = {}
        self.tokens = TokenCache()
        self._transport = transport or self.http_transport

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        hosts, self._hosts = list(self._hosts.values()), {}
        for host in hosts:
            await host.client.aclose()

    @property
    def blob_read_timeout(self) -> float | None:
        """Seconds allowed between two chunks of a blob's body: the shorter of the idle and
        the read timeouts."""
        idle, read = self.blob_idle_timeout, self._timeout.read
        if idle is None or read is None:
            return read if idle is None else idle
        return min(idle, read)

    def host_config(self, domain: str) -> HostConfig:
        return self._configs.get(domain, self._default)

    async def catalog(self, domain: str, page_size: int) -> AsyncIterator[list[str]]:
        """The repository names of ``domain`` (``GET /v2/_catalog?n=page_size``), a page at a
        time, following the registry's ``Link`` header. Raises CopyError (a registry without
        a catalog answers 404, 401 or 403)."""
        identity = await self.credentials(domain) if self.credentials is not None else None
        what = f"catalog of {domain}"

        async def get(url: str) -> Response:
            return await self.send(
                domain,
                "GET",
                url,
                identity=identity,
                scopes=("registry:catalog:*",),
                what=what,
                headers={"Accept": "application/json"},
            )

        first = with_params(f"{self._host(domain).base_url}/v2/_catalog", [("n", str(page_size))])
        async for page in _pages(get, first, what, "repositories", missing_ok=False):
            yield page

    def repository(
        self,
        reference: ImageReference | str,
        *,
        push: bool = False,
        credentials: CredentialsProvider | None = None,
    ) -> Repository:
        """A handle on the repository of ``reference`` (its tag and digest are ignored).

        ``push`` asks for ``pull,push`` tokens. ``credentials`` overrides the client's provider
        for this handle (for example the credentials of the pod an image is copied for).
        """
        ref = parse(reference) if isinstance(reference, str) else reference
        return Repository(self, ref.domain, ref.path, push, credentials or self.credentials)

    def _host(self, domain: str) -> _Host:
        host = self._hosts.get(domain)
        if host is None:
            config = self.host_config(domain)
            key = (config.verify_tls, config.ca_file)
            context = config.ssl_context or self._contexts.get(key)
            if context is None:
                context = self._contexts[key] = tls_context(
                    verify=config.verify_tls, ca_file=config.ca_file
                )
            host = self._hosts[domain] = _Host(domain, config, self._transport(context))
        return host

    def http_transport(self, context: ssl.SSLContext) -> Transport:
        """The transport of one registry host unless ``transport`` says otherwise: swapper's
        HTTP/1.1 client (:class:`~swapper.oci._http.HTTPClient`) with this client's timeout,
        connection cap and proxy settings (a test's ``transport`` may wrap it)."""
        return HTTPClient(
            context,
            timeout=self._timeout,
            max_connections=self._max_connections,
            headers={"User-Agent": USER_AGENT},
            trust_env=self._trust_env,
        )

    # -- authentication ------------------------------------------------------------------

    async def _challenge(self, host: _Host, identity: Credentials | None) -> Challenge:
        """How ``host`` wants to be authenticated. With credentials to send, ``GET /v2/`` asks
        once (some registries hide private repositories behind a 404 for anonymous callers);
        without, requests go anonymously and the first 401 teaches the challenge (one round trip
        less per registry)."""
        if host.challenge is not None:
            return host.challenge
        if identity is None:
            return ANONYMOUS
        async with host.lock:
            if host.challenge is None:
                response = await self._request(host, "GET", f"{host.base_url}/v2/", "ping")
                await _release(response)
                host.challenge = (
                    parse_challenge(response.headers.get("www-authenticate"))
                    if response.status_code == 401
                    else ANONYMOUS
                )
        return host.challenge

    async def _authorization(
        self, host: _Host, identity: Credentials | None, scopes: tuple[str, ...]
    ) -> dict[str, str]:
        challenge = await self._challenge(host, identity)
        if challenge.scheme == "bearer" and challenge.realm:
            token = await self.tokens.get_or_fetch(
                (host.domain, identity, scopes),
                lambda: self._fetch_token(host, challenge, identity, scopes),
            )
            return {"Authorization": f"Bearer {token}"}
        if challenge.scheme == "basic" and identity is not None:
            return {"Authorization": _basic(identity)}
        return {}

    async def _fetch_token(
        self,
        host: _Host,
        challenge: Challenge,
        identity: Credentials | None,
        scopes: tuple[str, ...],
    ) -> tuple[str, float]:
        params = [("scope", scope) for scope in scopes]
        if challenge.service:
            params.insert(0, ("service", challenge.service))
        url = with_params(challenge.realm, params)
        headers = {"Authorization": _basic(identity)} if identity is not None else {}
        what = f"token for {' '.join(scopes)} from {challenge.realm}"
        response = await self._request(host, "GET", url, what, headers=headers)
        try:
            if response.status_code != 200:
                error = await status_error(response, what)
                if response.status_code in (401, 403):
                    who = f"user {identity.username!r}" if identity else "anonymous access"
                    raise CopyError(f"{error} ({who})", CopyReason.UNAUTHORIZED)
                raise error
            async with response:
                data = await response.aread()
        except TransportError as exc:  # the answer's body broke off: as any failed exchange
            raise transport_error(exc, what) from exc
        try:
            body = orjson.loads(data)
            token = body.get("token") or body.get("access_token")
            expires_in = float(body.get("expires_in") or 60)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            token = None
        if not isinstance(token, str) or not token:
            raise CopyError(f"{what}: the answer holds no token", CopyReason.UNAUTHORIZED)
        return token, expires_in

    def _learn(
        self,
        host: _Host,
        response: Response,
        identity: Credentials | None,
        scopes: tuple[str, ...],
    ) -> None:
        """A 401: take the registry's (new) challenge and forget the token that was refused."""
        challenge = parse_challenge(response.headers.get("www-authenticate"))
        if challenge.scheme:
            host.challenge = challenge
        self.tokens.invalidate((host.domain, identity, scopes))

    # -- sending -------------------------------------------------------------------------

    def _wait(self, response: Response, attempt: int) -> float | None:
        """Seconds to wait before trying a transient failure again, or None to give up."""
        if attempt + 1 >= self.retry.attempts:
            return None
        asked = retry_after(response)
        if asked is not None and response.status_code in (429, 503):
            return asked if asked <= self.retry.max_retry_after else None
        return self.retry.delay(attempt)

    async def send(
        self,
        domain: str,
        method: str,
        url: str,
        *,
        identity: Credentials | None,
        scopes: tuple[str, ...],
        what: str,
        headers: dict[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        follow_redirects: bool = False,
        retry: bool = True,
    ) -> Response:
        """Send an authenticated request; the response is streamed (close it).

        Replayable requests (no body, or ``bytes``) are retried on transient failures (unless
        ``retry`` is false: the caller retries a larger unit) and re-authenticated once on 401.
        A streamed body is sent once. A transient failure that is not retried raises
        :class:`TransientCopyError`; other statuses are returned for the caller to judge.
        """
        return await self._request(
            self._host(domain),
            method,
            url,
            what,
            login=(identity, scopes),
            headers=headers,
            content=content,
            follow_redirects=follow_redirects,
            retry=retry,
        )

    async def _request(
        self,
        host: _Host,
        method: str,
        url: str,
        what: str,
        *,
        login: tuple[Credentials | None, tuple[str, ...]] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        follow_redirects: bool = False,
        retry: bool = True,
    ) -> Response:
        """The one request loop: :meth:`send`, and (``login`` None) the requests that carry no
        registry authentication (the ping, the token request).

        A replayable request (no body, or ``bytes``) with ``retry`` is tried again after a
        transient failure: a connection error or timeout after :meth:`RetryPolicy.delay`, a
        transient status after :meth:`_wait`, until ``retry.attempts`` tries. With ``login``
        (identity and scopes) each try carries the authorization for them, and a 401 teaches
        the registry's challenge and, for a replayable request, is tried once more with a new
        token (not counted as a try). A connection error or timeout that is not tried again
        raises its :func:`transport_error`; any answer not tried again is returned.
        """
        replayable = content is None or isinstance(content, bytes)
        retry = retry and replayable
        attempt = 0
        reauthenticated = False
        while True:
            sent = dict(headers or {})
            if login is not None:
                sent.update(await self._authorization(host, *login))
            try:
                response = await host.client.send(
                    method, url, headers=sent, content=content, follow_redirects=follow_redirects
                )
            except TransportError as exc:
                error = transport_error(exc, what)
                if (
                    not retry
                    or not isinstance(error, TransientCopyError)
                    or attempt + 1 >= self.retry.attempts
                ):
                    raise error from exc
                wait = self.retry.delay(attempt)
            else:
                if login is not None and response.status_code == 401:
                    self._learn(host, response, *login)
                    if not replayable or reauthenticated:
                        return response
                    await _release(response)
                    reauthenticated = True
                    continue
                if not retry or response.status_code not in TRANSIENT_STATUSES:
                    return response
                asked = self._wait(response, attempt)
                if asked is None:
                    return response
                await _release(response)
                wait = asked
            await asyncio.sleep(wait)
            attempt += 1


def _basic(identity: Credentials) -> str:
    raw = f"{identity.username}:{identity.secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class Repository:
    """One repository on one registry, with the actions and credentials to use on it."""

    def __init__(
        self,
        client: RegistryClient,
        domain: str,
        path: str,
        push: bool,
        credentials: CredentialsProvider | None,
    ) -> None:
        self.client = client
        self.domain = domain
        self.path = path
        self.push = push
        self._credentials = credentials
        self._identity: Credentials | None = None
        self._identity_known = False
        self._identity_lock = asyncio.Lock()
        self._base = f"{client._host(domain).base_url}/v2/{path}"
        self._scopes = (f"repository:{path}:{'pull,push' if push else 'pull'}",)

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def warm(self, count: int) -> None:
        """Have ``count`` connections to this registry opened in the background (TLS handshakes
        out of the way of the transfers about to start)."""
        host = self.client._host(self.domain)
        host.client.warm(host.base_url, count)

    @property
    def config(self) -> HostConfig:
        return self.client.host_config(self.domain)

    def __repr__(self) -> str:
        return f"Repository({self.name!r}, push={self.push})"

    async def identity(self) -> Credentials | None:
        """The credentials for this repository's host (the provider is asked once)."""
        if not self._identity_known:
            async with self._identity_lock:
                if not self._identity_known:
                    if self._credentials is not None:
                        self._identity = await self._credentials(self.domain)
                    self._identity_known = True
        return self._identity

    async def _send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        scopes: tuple[str, ...] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        follow_redirects: bool = False,
        retry: bool = True,
    ) -> Response:
        return await self.client.send(
            self.domain,
            method,
            url,
            identity=await self.identity(),
            scopes=scopes or self._scopes,
            what=what,
            headers=headers,
            content=content,
            follow_redirects=follow_redirects,
            retry=retry,
        )

    async def _expect(self, response: Response, ok: Container[int], what: str) -> None:
        if response.status_code not in ok:
            raise await status_error(response, what)

    # -- manifests -----------------------------------------------------------------------

    async def get_manifest(self, reference: str) -> Manifest:
        """The manifest or index at ``reference`` (tag or digest), exactly as served.

        When ``reference`` is a digest, the bytes are checked against it.
        """
        what = f"manifest {self.name}:{reference}"
        response = await self._send(
            "GET", f"{self._base}/manifests/{reference}", what, headers={"Accept": MANIFEST_ACCEPT}
        )
        async with response:
            await self._expect(response, (200,), what)
            too_large = CopyError(f"{what} is larger than 4 MiB", CopyReason.INVALID_MANIFEST)
            data = await _bounded_body(response, MAX_MANIFEST_BYTES, too_large, what)
        if ":" in reference:
            algorithm = check_digest(reference)
            digest = digest_of(data, algorithm)
            if digest != reference:
                raise CopyError(f"{what}: content has digest {digest}", CopyReason.DIGEST_MISMATCH)
        else:
            digest = digest_of(data)
        return parse_manifest(data, response.headers.get("content-type"), digest)

    async def head_manifest(self, reference: str) -> Descriptor | None:
        """Digest, media type and size of the manifest at ``reference``; None when absent."""
        what = f"manifest {self.name}:{reference}"
        response = await self._send(
            "HEAD", f"{self._base}/manifests/{reference}", what, headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code == 404:
            await _release(response)
            return None
        await self._expect(response, (200,), what)
        await _release(response)
        digest = response.headers.get("docker-content-digest") or (
            reference if ":" in reference else ""
        )
        media_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
        size = int(response.headers.get("content-length") or 0)
        return Descriptor(media_type, digest, size)

    async def put_manifest(self, reference: str, manifest: Manifest) -> str:
        """Push ``manifest.data`` unchanged under ``reference``; returns its digest."""
        what = f"push manifest {self.name}:{reference}"
        response = await self._send(
            "PUT",
            f"{self._base}/manifests/{reference}",
            what,
            headers={"Content-Type": manifest.media_type},
            content=manifest.data,
        )
        await self._expect(response, (200, 201, 202), what)
        await _release(response)
        pushed = response.headers.get("docker-content-digest")
        if pushed and pushed != manifest.digest:
            raise CopyError(
                f"{what}: the registry stored digest {pushed}, not {manifest.digest}",
                CopyReason.DIGEST_MISMATCH,
            )
        return manifest.digest

    async def get_referrers(
        self, digest: str, url: str | None = None
    ) -> tuple[bytes, str | None] | None:
        """One page of ``GET /v2/<name>/referrers/<digest>`` (OCI 1.1; ``url``: a next page):
        the body (at most 4 MiB, not parsed) and the next page's URL (``Link``), or None when
        the registry answers 404 (it has no referrers API: use the referrers tag fallback; 405
        and 501, which some registries answer for a route they lack, count the same). Any other
        status than 200 raises CopyError."""
        what = f"referrers of {self.name}@{digest}"
        response = await self._send(
            "GET",
            url or f"{self._base}/referrers/{digest}",
            what,
            headers={"Accept": OCI_INDEX},
        )
        if response.status_code in (404, 405, 501):
            await _release(response)
            return None
        async with response:
            await self._expect(response, (200,), what)
            too_large = CopyError(f"{what}: a page larger than 4 MiB", CopyReason.INVALID_MANIFEST)
            body = await _bounded_body(response, MAX_MANIFEST_BYTES, too_large, what)
        following = _next_link(response)
        return body, following if following != url else None

    async def delete_manifest(self, reference: str) -> bool:
        """``DELETE /v2/<name>/manifests/<reference>`` (a digest; OCI 1.1 registries also take
        a tag) with a ``delete`` token: True when deleted, False when the registry has no
        such manifest or repository (404). Any other answer raises CopyError (a refusal is
        ``REJECTED``: 400 or 405, or ``DENIED``: 403); it is not retried unless transient."""
        what = f"delete manifest {self.name}{'@' if ':' in reference else ':'}{reference}"
        response = await self._send(
            "DELETE",
            f"{self._base}/manifests/{reference}",
            what,
            scopes=(f"repository:{self.path}:delete",),
        )
        if response.status_code == 404:
            await _release(response)
            return False
        await self._expect(response, (200, 202, 204), what)
        await _release(response)
        return True

    async def tag_pages(self, page_size: int) -> AsyncIterator[list[str]]:
        """The repository's tags (``GET /v2/<name>/tags/list?n=page_size``), a page at a time,
        following the registry's ``Link`` header; nothing when the repository does not exist.
        (A registry may ignore ``n`` and send every tag in one page: distribution 2.x does.)"""
        what = f"tags of {self.name}"

        async def get(url: str) -> Response:
            return await self._send("GET", url, what, headers={"Accept": "application/json"})

        first = with_params(f"{self._base}/tags/list", [("n", str(page_size))])
        async for page in _pages(get, first, what, "tags", missing_ok=True):
            yield page

    # -- blobs ---------------------------------------------------------------------------

    async def blob_exists(self, digest: str) -> bool:
        what = f"blob {self.name}@{digest}"
        response = await self._send("HEAD", f"{self._base}/blobs/{digest}", what)
        if response.status_code == 404:
            await _release(response)
            return False
        await self._expect(response, (200,), what)
        await _release(response)
        return True

    @asynccontextmanager
    async def open_blob(
        self, digest: str, *, retry: bool = True
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Stream a blob's bytes (redirects to storage followed, as served, not verified).

        Reading the stream raises :class:`~swapper.errors.ReadTimeout` when nothing comes
        for the client's :attr:`~RegistryClient.blob_read_timeout`.
        """
        what = f"blob {self.name}@{digest}"
        response = await self._send(
            "GET",
            f"{self._base}/blobs/{digest}",
            what,
            headers={"Accept-Encoding": "identity"},
            follow_redirects=True,
            retry=retry,
        )
        async with response:
            await self._expect(response, (200,), what)
            response.read_timeout = self.client.blob_read_timeout
            encoded = response.headers.get("content-encoding", "identity") != "identity"
            yield response.aiter_bytes() if encoded else response.aiter_raw()

    async def start_upload(self, *, retry: bool = True) -> str:
        what = f"start upload to {self.name}"
        response = await self._send("POST", f"{self._base}/blobs/uploads/", what, retry=retry)
        await self._expect(response, (202,), what)
        await _release(response)
        return self._location(response, what)

    def _location(self, response: Response, what: str) -> str:
        location = response.headers.get("location")
        if not location:
            raise CopyError(f"{what}: the registry sent no Location", CopyReason.REJECTED)
        return urljoin(response.url, location)

    async def mount_blob(self, digest: str, source_path: str) -> Mount:
        """Ask for ``digest`` from ``source_path`` (same registry) to be linked here."""
        what = f"mount {digest} from {source_path} into {self.name}"
        scopes = (*self._scopes, f"repository:{source_path}:pull")
        params = [("mount", digest), ("from", source_path)]
        url = with_params(f"{self._base}/blobs/uploads/", params)
        response = await self._send("POST", url, what, scopes=scopes)
        await self._expect(response, (201, 202), what)
        await _release(response)
        if response.status_code == 201:
            return Mount(mounted=True)
        return Mount(mounted=False, location=self._location(response, what))

    async def upload_blob(
        self,
        chunks: AsyncIterable[bytes],
        digest: str,
        size: int,
        *,
        location: str | None = None,
        retry: bool = True,
    ) -> None:
        """Upload ``size`` bytes from ``chunks`` as blob ``digest``, in one PUT or in parts.

        ``location`` is an upload session already started (by a mount that was refused).
        ``chunks`` is read once; a failure raises (:class:`TransientCopyError` when transient)
        and the blob must be sent again from the start. The registry checks the digest.
        ``retry`` applies to starting the session only.
        """
        what = f"upload {digest} to {self.name}"
        location = location or await self.start_upload(retry=retry)
        try:
            if self.config.upload == "chunked":
                location = await self._upload_parts(chunks, size, location, what)
                content: AsyncIterable[bytes] | bytes = b""
                length = 0
            else:
                content, length = chunks, size
            url = with_params(location, [("digest", digest)])
            response = await self._send(
                "PUT",
                url,
                what,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                },
                content=content,
            )
            await self._expect(response, (201, 204), what)
            await _release(response)
        except Exception:
            # Not on cancellation: a deadline should not wait for cleanup. The registry purges
            # abandoned uploads on its own.
            await self.cancel_upload(location)
            raise

    async def _upload_parts(
        self, chunks: AsyncIterable[bytes], size: int, location: str, what: str
    ) -> str:
        reader = _PartReader(chunks)
        part_size = self.config.chunk_size
        offset = 0
        while offset < size:
            length = min(part_size, size - offset)
            response = await self._send(
                "PATCH",
                location,
                what,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                content=reader.part(length),
            )
            await self._expect(response, (202, 204), what)
            await _release(response)
            location = self._location(response, what)
            offset += length
        await reader.finish()
        return location

    async def cancel_upload(self, location: str) -> None:
        """Best effort, once, briefly: ask the registry to drop an unfinished upload."""
        host = self.client._host(self.domain)
        try:
            async with asyncio.timeout(2):
                auth = await self.client._authorization(host, await self.identity(), self._scopes)
                response = await host.client.send("DELETE", location, headers=auth)
                await _release(response)
        except (CopyError, TransportError, TimeoutError):
            pass


class _PartReader:
    """Cuts one stream of chunks into parts of exact lengths, without copying whole parts."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = aiter(chunks)
        self._rest = b""

    async def _next(self) -> bytes:
        if self._rest:
            chunk, self._rest = self._rest, b""
            return chunk
        return await anext(self._chunks)

    async def part(self, length: int) -> AsyncIterator[bytes]:
        remaining = length
        while remaining > 0:
            try:
                chunk = await self._next()
            except StopAsyncIteration:
                raise CopyError(
                    f"blob stream ended {remaining} bytes early", CopyReason.DIGEST_MISMATCH
                ) from None
            if len(chunk) > remaining:
                chunk, self._rest = chunk[:remaining], chunk[remaining:]
            remaining -= len(chunk)
            yield chunk

    async def finish(self) -> None:
        """Drain the stream: lets a verifying stream check its digest before the final PUT."""
        while True:
            try:
                chunk = await self._next()
            except StopAsyncIteration:
                return
            if chunk:
                raise CopyError("blob stream is longer than its size", CopyReason.DIGEST_MISMATCH)
