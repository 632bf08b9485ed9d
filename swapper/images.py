"""Image references: the distribution grammar, normalisation and naming in the target registry.

:func:`parse` follows the rules of ``reference.ParseNormalizedNamed`` in the Docker/OCI
distribution project::

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [ domain "/" ] remote-name
    domain          := host [ ":" port ]
    host            := domain-name | IPv4 | "[" IPv6 "]"
    domain-name     := domain-component [ "." domain-component ]*
    domain-component:= [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
    port            := [0-9]+
    remote-name     := path-component [ "/" path-component ]*
    path-component  := alpha-numeric [ separator alpha-numeric ]*
    alpha-numeric   := [a-z0-9]+
    separator       := [_.] | "__" | [-]+
    tag             := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest          := algorithm ":" encoded
    algorithm       := [a-z0-9]+ ( [+._-] [a-z0-9]+ )*
    encoded         := [a-zA-Z0-9=_-]+

The first "/"-separated component is a registry host only when it contains "." or ":", is
``localhost``, or has uppercase letters; otherwise the image is on Docker Hub (``docker.io``)
and a single-component path gets ``library/``. Two deliberate differences from the Go code:

- The registry host is lowercased (hosts are case-insensitive). A first component that is a host
  *only* because of its uppercase letters (``UPPER/case``) is rejected, since lowercasing it
  would silently turn it into a Docker Hub path.
- ``index.docker.io`` and ``registry-1.docker.io`` normalise to ``docker.io``, and IPv6 hosts to
  their compressed form (``[0:0::1]`` -> ``[::1]``).

A digest is valid only for an algorithm registered by the OCI image spec, at its length:
``sha256`` with 64 and ``sha512`` with 128 lowercase hex characters. Anything else
(``invaliddigest:<64 hex>``, ``md5:...``) is an invalid reference, which swapper never mirrors.

Every failure raises :class:`~swapper.errors.InvalidReference` with a reason.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from swapper.errors import InvalidReference

__all__ = [
    "DOCKER_HUB",
    "ImageReference",
    "is_at_endpoint",
    "parse",
    "target_reference",
]

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_OFFICIAL_PREFIX = "library/"

NAME_MAX_LENGTH = 255  # domain + "/" + path
TAG_MAX_LENGTH = 128
# Not part of the grammar: a bound on what we are willing to look at (and keep in the cache).
# A real reference is at most ~520 characters (name, tag and a sha512 digest).
REFERENCE_MAX_LENGTH = 4096

_DOMAIN_COMPONENT = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN_RE = re.compile(
    rf"(?P<host>{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[(?P<ipv6>[0-9a-fA-F:]+)\])"
    r"(?::(?P<port>[0-9]+))?"
)
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_COMPONENT_RE = re.compile(_PATH_COMPONENT)
_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(
    r"(?P<algorithm>[a-z0-9]+(?:[+._-][a-z0-9]+)*):(?P<encoded>[a-zA-Z0-9=_-]+)"
)
_HEX64_RE = re.compile(r"[a-f0-9]{64}")
_UPPERCASE_RE = re.compile(r"[A-Z]")
# The registered digest algorithms and their encoded lengths (lowercase hex).
DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}
_KNOWN_DIGESTS = {
    algorithm: re.compile(f"[a-f0-9]{{{length}}}") for algorithm, length in DIGEST_LENGTHS.items()
}


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed, normalised image reference. Build it with :func:`parse`."""

    domain: str  # registry host[:port], lowercased; "docker.io" for Docker Hub; "[::1]:5000"
    path: str  # repository path, e.g. "library/nginx"
    tag: str | None
    digest: str | None  # "algorithm:encoded"
    original: str  # the input as given to parse()

    @property
    def name(self) -> str:
        """The fully qualified repository name, ``domain/path``."""
        return f"{self.domain}/{self.path}"

    def _suffix(self) -> str:
        if self.tag is None and self.digest is None:
            return ":latest"
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    def __str__(self) -> str:
        """``name[:tag][@digest]``; ``:latest`` is added when there is neither."""
        return self.name + self._suffix()

    def familiar(self) -> str:
        """The short Docker form (``nginx:1.27``, ``bitnami/redis:7``); ``str()`` elsewhere.

        ``docker.io/`` is kept when dropping it would make the first path component read as a
        registry host (``docker.io/a.b/c``). The suffix is the same as ``str()``'s.
        """
        if self.domain != DOCKER_HUB:
            return str(self)
        path = self.path
        if path.startswith(_OFFICIAL_PREFIX) and path.count("/") == 1:
            return path[len(_OFFICIAL_PREFIX) :] + self._suffix()
        first = path.partition("/")[0]
        if "." in first or first == "localhost":
            return str(self)
        return path + self._suffix()

    def mirror_path(self) -> str:
        """The repository path under a target registry: ``<domain as a path component>/<path>``.

        ``docker.io`` -> ``docker.io``, ``localhost:5000`` -> ``localhost_5000``,
        ``[::1]:5000`` -> ``0000-0000-0000-0000-0000-0000-0000-0001_5000``.
        """
        return f"{_domain_as_path_component(self.domain)}/{self.path}"


@functools.lru_cache(maxsize=1024)
def _domain_as_path_component(domain: str) -> str:
    if domain.startswith("["):
        address, _, port = domain[1:].partition("]")
        host = ipaddress.IPv6Address(address).exploded.replace(":", "-")
        port = port.removeprefix(":")
        return f"{host}_{port}" if port else host
    return domain.lower().replace(":", "_")


def _canonical_domain(domain: str) -> str:
    """Lowercase, Docker Hub aliases to ``docker.io``, IPv6 compressed. Never raises."""
    domain = domain.lower()
    if domain in _DOCKER_HUB_ALIASES:
        return DOCKER_HUB
    if domain.startswith("["):
        address, bracket, rest = domain[1:].partition("]")
        try:
            compressed = ipaddress.IPv6Address(address).compressed
        except ValueError:
            return domain
        if bracket:
            return f"[{compressed}]{rest}"
    return domain


def parse(reference: str) -> ImageReference:
    """Parse and normalise an image reference. Raises :class:`InvalidReference`."""
    if not isinstance(reference, str):
        raise InvalidReference(repr(reference), "reference must be a string")
    return _parse(reference)


@functools.lru_cache(maxsize=4096)
def _parse(reference: str) -> ImageReference:
    if not reference:
        raise InvalidReference(reference, "reference is empty")
    if len(reference) > REFERENCE_MAX_LENGTH:
        raise InvalidReference(
            reference, f"reference is longer than {REFERENCE_MAX_LENGTH} characters"
        )
    if reference.strip() != reference:
        raise InvalidReference(reference, "reference has leading or trailing whitespace")
    if "://" in reference:
        raise InvalidReference(reference, "reference must not contain a URL scheme")
    if _HEX64_RE.fullmatch(reference):
        raise InvalidReference(
            reference, "cannot specify 64-byte hexadecimal strings as a repository name"
        )

    rest, at, digest_text = reference.partition("@")
    digest = _parse_digest(reference, digest_text) if at else None

    domain, remainder = _split_domain(reference, rest)

    path, colon, tag = remainder.partition(":")
    if colon:
        if not tag:
            raise InvalidReference(reference, "tag is empty")
        if len(tag) > TAG_MAX_LENGTH:
            raise InvalidReference(reference, f"tag is longer than {TAG_MAX_LENGTH} characters")
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(
                reference,
                f"invalid tag {tag!r}: must be letters, digits, '_', '.' or '-' "
                "and not start with '.' or '-'",
            )

    _check_path(reference, path)
    if domain == DOCKER_HUB and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    if len(domain) + 1 + len(path) > NAME_MAX_LENGTH:
        raise InvalidReference(
            reference, f"repository name must not be more than {NAME_MAX_LENGTH} characters"
        )
    return ImageReference(
        domain=domain, path=path, tag=tag if colon else None, digest=digest, original=reference
    )


def _parse_digest(reference: str, digest: str) -> str:
    if not digest:
        raise InvalidReference(reference, "digest is empty")
    match = _DIGEST_RE.fullmatch(digest)
    if match is None:
        raise InvalidReference(
            reference,
            f"invalid digest {digest!r}: must be 'algorithm:encoded', e.g. 'sha256:<hex>'",
        )
    algorithm, encoded = match["algorithm"], match["encoded"]
    known = _KNOWN_DIGESTS.get(algorithm)
    if known is None:
        raise InvalidReference(
            reference,
            f"unsupported digest algorithm {algorithm!r}: must be "
            + " or ".join(repr(name) for name in DIGEST_LENGTHS),
        )
    if not known.fullmatch(encoded):
        raise InvalidReference(
            reference,
            f"{algorithm} digest must be {DIGEST_LENGTHS[algorithm]} lowercase hex characters",
        )
    return digest


def _split_domain(reference: str, name: str) -> tuple[str, str]:
    """Split ``name[:tag]`` into the normalised domain and the rest."""
    first, slash, remainder = name.partition("/")
    if not slash:
        return DOCKER_HUB, name
    lowered = first.lower()
    looks_like_host = "." in first or ":" in first or lowered == "localhost"
    if not looks_like_host:
        if lowered == first:
            return DOCKER_HUB, name
        raise InvalidReference(
            reference,
            f"repository name must be lowercase ({first!r} is not a registry host: "
            "it has no '.' or ':' and is not 'localhost')",
        )
    match = _DOMAIN_RE.fullmatch(first)
    if match is None:
        raise InvalidReference(reference, f"invalid registry host {first!r}")
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            raise InvalidReference(
                reference, f"invalid IPv6 address {match['ipv6']!r} in registry host"
            ) from None
    return _canonical_domain(first), remainder


def _check_path(reference: str, path: str) -> None:
    if _PATH_RE.fullmatch(path):
        return
    if not path:
        raise InvalidReference(reference, "repository name is empty")
    if _UPPERCASE_RE.search(path):
        raise InvalidReference(reference, f"repository name must be lowercase: {path!r}")
    for component in path.split("/"):
        if not component:
            raise InvalidReference(reference, f"repository name {path!r} has an empty component")
        if not _PATH_COMPONENT_RE.fullmatch(component):
            raise InvalidReference(
                reference,
                f"invalid repository name component {component!r}: lowercase letters and "
                "digits, separated by '.', '_', '__' or dashes",
            )
    raise InvalidReference(reference, f"invalid repository name {path!r}")  # not reached


@functools.lru_cache(maxsize=64)
def _split_endpoint(endpoint: str) -> str:
    host, _, prefix = endpoint.rstrip("/").partition("/")
    host = _canonical_domain(host)
    return f"{host}/{prefix}" if prefix else host


def target_reference(ref: ImageReference, endpoint: str) -> str:
    """The mirror reference of ``ref`` under ``endpoint`` (``host[:port][/path/prefix]``).

    ``<endpoint>/<mirror_path>`` followed by the tag and/or the digest (both are kept when both
    are given), or ``:latest`` when there is neither.
    """
    return f"{endpoint.rstrip('/')}/{ref.mirror_path()}{ref._suffix()}"


def is_at_endpoint(ref: ImageReference, endpoint: str) -> bool:
    """True when ``ref`` already lives under ``endpoint`` (``host[:port][/path/prefix]``).

    The host compares case-insensitively and with the Docker Hub aliases; the path prefix must
    match whole components (``reg.io/mirror`` does not contain ``reg.io/mirror2/x``).
    """
    base = _split_endpoint(endpoint)
    if not base or base.startswith("/"):
        return False
    name = ref.name
    return name == base or name.startswith(base + "/")


_IPV6_EXPLODED = re.compile(r"^[0-9a-f]{4}(-[0-9a-f]{4}){7}$")


def _domain_from_path_component(component: str) -> str | None:
    """The registry host :meth:`ImageReference.mirror_path` wrote as ``component``, or None."""
    host, underscore, port = component.rpartition("_")
    if not (underscore and port.isdigit()):
        host, port = component, ""
    if _IPV6_EXPLODED.match(host):
        host = f"[{ipaddress.IPv6Address(host.replace('-', ':')).compressed}]"
    elif not ("." in host or host == "localhost"):
        return None  # not a registry host: the path is not a mirror path
    return f"{host}:{port}" if port else host


def source_of_mirror(ref: ImageReference, endpoint: str) -> ImageReference | None:
    """The source image whose mirror under ``endpoint`` is ``ref`` (the reverse of
    :func:`target_reference`), or None when ``ref`` is not a mirror path there."""
    base = _split_endpoint(endpoint)
    name = ref.name
    if not base or not name.startswith(base + "/"):
        return None
    first, _, path = name[len(base) + 1 :].partition("/")
    domain = _domain_from_path_component(first)
    if domain is None or not path:
        return None
    try:
        return parse(f"{domain}/{path}{ref._suffix()}")
    except InvalidReference:
        return None
