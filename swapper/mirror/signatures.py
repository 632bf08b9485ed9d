"""The registry-backed signature check of ``mirror.verify`` (:class:`SignatureVerifier`).

For a source image, in this order, stopping as soon as every rule that applies is satisfied:

1. the reference is resolved to its digest (a ``HEAD``; none for a reference by digest);
2. cosign's tag scheme: the manifest ``sha256-<hex>.sig`` in the image's repository, each of its
   simple signing layers checked (:func:`swapper.cosign.check_simple_signing`);
3. the image's OCI 1.1 referrers (``GET /v2/<name>/referrers/<digest>``; a registry that answers
   404 is asked for the referrers tag ``sha256-<hex>`` the distribution spec defines as its
   fallback): cosign signature referrers (``--registry-referrers-mode=oci-1-1``) and sigstore
   bundles (``--new-bundle-format``), checked by :mod:`swapper.cosign`.

Bounds: at most :data:`MAX_SIGNATURES` signature layers and :data:`MAX_REFERRERS` referrers are
looked at per image, each blob at most :data:`swapper.cosign.MAX_PAYLOAD_BYTES`, and every
request has the client's timeouts. A referrer that is not a signature (an SBOM, an attestation
whose annotation says so) is not fetched.

Answers are kept in bounded :class:`~swapper.aio.TTLMap` s: per ``(digest, rules)`` (verified
for ``ttl``, unsigned or invalid for ``negative_ttl``), and per reference the digest a tag
resolved to (for ``tag_ttl``, so a moved tag is seen within it). A registry failure is an
``error`` answer, kept for ``error_ttl`` only. One check per reference and rules runs at a time
however many pods ask (:class:`~swapper.aio.SingleFlight`); a caller's deadline ends its wait,
not the check, whose answer then serves the next pod. Nothing here raises for bad input: a
malformed manifest, referrers index, payload or bundle, or a signature over another digest is
an ``invalid`` answer with its reason.

Referrer discovery is this module's own small one (a ``GET`` of the referrers API and the tag
fallback); it can be folded into the OCI client's referrers support when that lands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from swapper.access.keyring import Keyring
from swapper.aio import SingleFlight, TTLMap
from swapper.cosign import (
    BUNDLE_TYPES,
    MAX_PAYLOAD_BYTES,
    SIG_ARTIFACT_TYPE,
    SIGN_PREDICATE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING,
    PublicKey,
    check_bundle,
    check_simple_signing,
)
from swapper.credentials import Credentials
from swapper.errors import CopyError, CopyReason, SignatureError, SwapperError
from swapper.images import ImageReference
from swapper.logs import get_logger
from swapper.metrics import Metrics
from swapper.mirror.queue import Requester
from swapper.mirror.trust import SignatureState, Signed, VerifyRules
from swapper.oci import CredentialsProvider, RegistryClient, Repository
from swapper.oci._manifests import digest_of

log = get_logger("swapper.signatures")

MAX_SIGNATURES = 32  # signature layers looked at per image
MAX_REFERRERS = 16  # signature referrers fetched per image
PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
# A registry without the referrers API answers 404 (the spec), some 400 or 405: the tag fallback.
# Artifact types that do not say what a referrer is: its manifest has to be read.
_UNSAID = frozenset(
    {None, "", "application/vnd.oci.empty.v1+json", "application/vnd.oci.image.config.v1+json"}
)

KeyringSource = Callable[[Requester], Keyring]


@dataclass
class _Findings:
    """What one examination found so far."""

    rules: tuple[int, ...]
    rule_keys: Sequence[frozenset[int]]
    keys: Sequence[PublicKey]
    seen: int = 0  # signatures (layers, bundles) looked at
    problems: list[str] = field(default_factory=list)
    satisfied: dict[int, str] = field(default_factory=dict)  # rule -> the key that verified

    @property
    def done(self) -> bool:
        return len(self.satisfied) == len(self.rules)

    def record(self, matched: frozenset[int], where: str) -> None:
        self.seen += 1
        if not matched:
            self.problems.append(f"{where}: signed by none of the keys")
            return
        for rule in self.rules:
            if rule not in self.satisfied:
                for index in sorted(matched & self.rule_keys[rule]):
                    self.satisfied[rule] = self.keys[index].name
                    break
        if not all(rule in self.satisfied for rule in self.rules):
            self.problems.append(f"{where}: verified by a key of another rule only")

    def problem(self, where: str, exc: SignatureError) -> None:
        self.seen += 1
        self.problems.append(f"{where}: {exc}")


def _provider(identity: Credentials) -> CredentialsProvider:
    async def provide(_: str) -> Credentials | None:
        return identity

    return provide


class SignatureVerifier:
    """Checks ``mirror.verify`` for a source image against its registry (see the module
    docstring); implements :class:`~swapper.mirror.trust.SignatureCheck`."""

    def __init__(
        self,
        client: RegistryClient,
        rules: VerifyRules,
        keyrings: KeyringSource | None = None,
        metrics: Metrics | None = None,
        *,
        ttl: float = 3600.0,
        negative_ttl: float = 60.0,
        error_ttl: float = 10.0,
        tag_ttl: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        credentials: CredentialsProvider | None = None,
    ) -> None:
        self.client = client
        self.credentials = credentials  # for sources no pod keyring names (swapper mirror)
        self.rules = rules
        self.keyrings = keyrings
        self.metrics = metrics or Metrics()
        self.ttl, self.negative_ttl, self.error_ttl, self.tag_ttl = (
            ttl,
            negative_ttl,
            error_ttl,
            tag_ttl,
        )
        # Every rule's keys in one list (a file named twice is one key), and per rule the
        # indexes of its own.
        keys: list[PublicKey] = []
        by_name: dict[str, int] = {}
        rule_keys: list[frozenset[int]] = []
        for rule in rules.rules:
            own: set[int] = set()
            for key in rule.public_keys:
                if key.name not in by_name:
                    by_name[key.name] = len(keys)
                    keys.append(key)
                own.add(by_name[key.name])
            rule_keys.append(frozenset(own))
        self.keys: tuple[PublicKey, ...] = tuple(keys)
        self.rule_keys: tuple[frozenset[int], ...] = tuple(rule_keys)
        self._answers: TTLMap[tuple[str, tuple[int, ...]], Signed] = TTLMap(max_entries, clock)
        self._digests: TTLMap[str, str] = TTLMap(max_entries, clock)  # reference -> digest
        self._errors: TTLMap[tuple[str, tuple[int, ...]], Signed] = TTLMap(max_entries, clock)
        self._checks: SingleFlight[tuple[str, tuple[int, ...]], Signed] = SingleFlight()

    # -- the protocol -------------------------------------------------------------------------

    def known(self, source: ImageReference, rules: tuple[int, ...]) -> Signed | None:
        if not rules:
            return Signed(SignatureState.VERIFIED, source.digest or "", "no rule applies")
        failed = self._errors.get((str(source), rules))
        if failed is not None:
            return failed
        digest = source.digest or self._digests.get(str(source))
        return None if digest is None else self._answers.get((digest, rules))

    async def check(
        self,
        source: ImageReference,
        rules: tuple[int, ...],
        who: Requester | None,
        deadline: float | None,
    ) -> Signed:
        found = self.known(source, rules)
        if found is not None:
            return found
        task = self._checks.start((str(source), rules), lambda: self._verify(source, rules, who))
        if deadline is None:
            return await asyncio.shield(task)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0.0)):
                return await asyncio.shield(task)
        except TimeoutError:
            return Signed(
                SignatureState.ERROR,
                source.digest or "",
                "the signature check did not finish in time (it goes on; the next pod gets "
                "its answer)",
            )

    async def aclose(self) -> None:
        await self._checks.aclose()

    # -- the work -----------------------------------------------------------------------------

    def _repository(self, source: ImageReference, who: Requester | None) -> Repository:
        if self.keyrings is not None and who is not None:
            found = self.keyrings(who).lookup(source.name)
            if found:
                return self.client.repository(source, credentials=_provider(found[0]))
        return self.client.repository(source, credentials=self.credentials)

    async def _verify(
        self, source: ImageReference, rules: tuple[int, ...], who: Requester | None
    ) -> Signed:
        repo = self._repository(source, who)
        try:
            digest = source.digest or await self._resolve(repo, source)
            cached = self._answers.get((digest, rules))
            if cached is not None:
                return cached
            answer = await self._examine(repo, digest, rules)
        except (SwapperError, OSError) as exc:  # the registry, not the signatures
            answer = Signed(
                SignatureState.ERROR, source.digest or "", f"could not read signatures: {exc}"
            )
            self._errors.set((str(source), rules), answer, self.error_ttl)
            log.warning("signature_check_failed", source=str(source), error=str(exc))
        except Exception as exc:  # a bug here must not take admission down: not verified
            answer = Signed(
                SignatureState.ERROR,
                source.digest or "",
                f"the signature check failed ({type(exc).__name__})",
            )
            self._errors.set((str(source), rules), answer, self.error_ttl)
            log.exception("signature_check_crashed", source=str(source))
        else:
            ttl = self.ttl if answer.verified else self.negative_ttl
            self._answers.set((digest, rules), answer, ttl)
            if not answer.verified:
                log.warning(
                    "signature_unverified",
                    source=str(source),
                    digest=digest,
                    result=answer.state.value,
                    reason=answer.reason,
                )
        self.metrics.signature_verifications.labels(answer.state.value).inc()
        return answer

    async def _resolve(self, repo: Repository, source: ImageReference) -> str:
        descriptor = await repo.head_manifest(source.tag or "latest")
        if descriptor is None or not descriptor.digest:
            raise CopyError(f"{source} is not at the source", CopyReason.NOT_FOUND)
        self._digests.set(str(source), descriptor.digest, self.tag_ttl)
        return descriptor.digest

    async def _examine(self, repo: Repository, digest: str, rules: tuple[int, ...]) -> Signed:
        findings = _Findings(rules, self.rule_keys, self.keys)
        algorithm, _, encoded = digest.partition(":")
        tag = f"{algorithm}-{encoded}"
        # 1. cosign's tag scheme
        try:
            manifest = await _manifest_or_none(repo, f"{tag}.sig")
        except SignatureError as exc:
            findings.problem(f"{tag}.sig", exc)
            manifest = None
        if manifest is not None:
            await self._simple_signing_layers(repo, manifest, digest, findings, f"{tag}.sig")
        # 2. OCI 1.1 referrers (or their tag fallback)
        if not findings.done:
            try:
                referrers = await _referrers(repo, digest, tag)
            except SignatureError as exc:
                findings.problem("referrers", exc)
                referrers = []
            for referrer in referrers[:MAX_REFERRERS]:
                if findings.done:
                    break
                await self._referrer(repo, referrer, digest, findings)
        where = ", ".join(self.rules.describe((r,)) for r in rules)
        if findings.done:
            keys = sorted(set(findings.satisfied.values()))
            return Signed(
                SignatureState.VERIFIED, digest, f"verified by {', '.join(keys)}", keys[0]
            )
        if findings.seen == 0:
            return Signed(
                SignatureState.UNSIGNED,
                digest,
                f"no cosign signature for {digest} (needed by {where})",
            )
        shown = "; ".join(findings.problems[:3])
        more = len(findings.problems) - 3
        return Signed(
            SignatureState.INVALID,
            digest,
            f"no signature verified by the keys of {where} ({shown}"
            + (f"; {more} more" if more > 0 else "")
            + ")",
        )

    async def _referrer(
        self, repo: Repository, referrer: dict[str, Any], digest: str, findings: _Findings
    ) -> None:
        ref_digest = referrer.get("digest")
        if not isinstance(ref_digest, str) or not ref_digest.startswith("sha256:"):
            findings.problem("referrers", SignatureError("a referrer has no sha256 digest"))
            return
        kind = referrer.get("artifactType")
        if not _may_sign(kind, referrer.get("annotations")):
            return  # an SBOM, an attestation, a Notation signature: not cosign's signature
        where = f"referrer {ref_digest[:19]}"
        try:
            manifest = await _manifest_or_none(repo, ref_digest)
            if manifest is None:
                raise SignatureError("listed but not served")
        except SignatureError as exc:
            findings.problem(where, exc)
            return
        if kind in _UNSAID:  # the listing did not say: the manifest does
            config = manifest.get("config")
            kind = manifest.get("artifactType") or (
                config.get("mediaType") if isinstance(config, dict) else None
            )
            if kind in _UNSAID or not _may_sign(kind, manifest.get("annotations")):
                return
        if kind == SIG_ARTIFACT_TYPE:
            await self._simple_signing_layers(repo, manifest, digest, findings, where)
            return
        for layer in _layers(manifest)[:MAX_SIGNATURES]:
            if layer.get("mediaType") not in BUNDLE_TYPES:
                continue
            try:
                bundle = await _small_blob(repo, layer)
                findings.record(check_bundle(bundle, digest, self.keys), where)
            except SignatureError as exc:
                findings.problem(where, exc)
            if findings.done:
                return

    async def _simple_signing_layers(
        self,
        repo: Repository,
        manifest: dict[str, Any],
        digest: str,
        findings: _Findings,
        where: str,
    ) -> None:
        for layer in _layers(manifest)[:MAX_SIGNATURES]:
            if layer.get("mediaType") != SIMPLE_SIGNING:
                continue
            annotations = layer.get("annotations")
            signature = (
                annotations.get(SIGNATURE_ANNOTATION) if isinstance(annotations, dict) else None
            )
            try:
                payload = await _small_blob(repo, layer)
                findings.record(check_simple_signing(payload, signature, digest, self.keys), where)
            except SignatureError as exc:
                findings.problem(where, exc)
            if findings.done:
                return


def _may_sign(kind: object, annotations: object) -> bool:
    """Whether a referrer of this artifact type (with these annotations) may be a cosign
    signature: a cosign signature or a bundle that does not say it holds an attestation; or
    a type not said (some registries list the config's media type, often the empty one)."""
    if kind in _UNSAID:
        return True
    if kind in BUNDLE_TYPES:
        predicate = annotations.get(PREDICATE_ANNOTATION) if isinstance(annotations, dict) else None
        return predicate in (None, SIGN_PREDICATE)
    return kind == SIG_ARTIFACT_TYPE


def _layers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        return []
    return [layer for layer in layers if isinstance(layer, dict)]


async def _manifest_or_none(repo: Repository, reference: str) -> dict[str, Any] | None:
    """The manifest document at ``reference``, None when the registry has none (404);
    SignatureError when it is not a JSON object."""
    try:
        manifest = await repo.get_manifest(reference)
    except CopyError as exc:
        if exc.reason is CopyReason.NOT_FOUND:
            return None
        if exc.reason in (CopyReason.INVALID_MANIFEST, CopyReason.UNSUPPORTED):
            raise SignatureError(str(exc)) from None  # it names the manifest
        raise
    return manifest.document


async def _small_blob(repo: Repository, descriptor: dict[str, Any]) -> bytes:
    """A signature layer or bundle: at most MAX_PAYLOAD_BYTES, checked against its digest."""
    digest = descriptor.get("digest")
    size = descriptor.get("size")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise SignatureError("a signature layer has no sha256 digest")
    if not isinstance(size, int) or not 0 < size <= MAX_PAYLOAD_BYTES:
        raise SignatureError(f"a signature layer's size is {size!r} (at most 256 KiB)")
    body = bytearray()
    async with repo.open_blob(digest) as chunks:
        async for chunk in chunks:
            body += chunk
            if len(body) > size:
                raise SignatureError(f"blob {digest[:19]} is larger than its descriptor says")
    data = bytes(body)
    if digest_of(data) != digest:
        raise SignatureError(f"blob {digest[:19]} does not match its digest")
    return data


async def _referrers(repo: Repository, digest: str, tag: str) -> list[dict[str, Any]]:
    """The descriptors of ``digest``'s referrers: the referrers API (its first page: at most
    MAX_REFERRERS are looked at anyway), or its tag fallback when the registry has no such API.
    SignatureError for an index that is not one."""
    page = await repo.get_referrers(digest)
    if page is None:
        fallback = await _manifest_or_none(repo, tag)
        return _descriptors(fallback, f"the referrers tag {tag}") if fallback else []
    try:
        document = orjson.loads(page[0])
    except orjson.JSONDecodeError:
        raise SignatureError("the referrers index is not JSON") from None
    return _descriptors(document, "the referrers index")


def _descriptors(document: object, what: str) -> list[dict[str, Any]]:
    if not isinstance(document, dict) or not isinstance(document.get("manifests"), list):
        raise SignatureError(f"{what} is not an OCI index (no manifests list)")
    return [d for d in document["manifests"] if isinstance(d, dict)]


def pinned(source: ImageReference, signed: Signed) -> ImageReference:
    """``source`` pinned to the digest its signature verified (a tag keeps its name)."""
    if source.digest or not signed.digest:
        return source
    return replace(source, digest=signed.digest)
