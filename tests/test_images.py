from __future__ import annotations

import dataclasses

import pytest

from swapper.errors import InvalidReference, SwapperError
from swapper.images import ImageReference, is_at_endpoint, parse, source_of_mirror, target_reference

SHA = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "0123456789abcdef" * 8
HEX64 = "f" * 64
HUB = "docker.io"

# input, domain, path, tag, digest, str()
VALID: list[tuple[str, str, str, str | None, str | None, str]] = [
    # Docker Hub, short forms
    ("nginx", HUB, "library/nginx", None, None, "docker.io/library/nginx:latest"),
    ("nginx:1.27", HUB, "library/nginx", "1.27", None, "docker.io/library/nginx:1.27"),
    ("nginx:latest", HUB, "library/nginx", "latest", None, "docker.io/library/nginx:latest"),
    (f"nginx@{SHA}", HUB, "library/nginx", None, SHA, f"docker.io/library/nginx@{SHA}"),
    (
        f"nginx:1.27@{SHA}",
        HUB,
        "library/nginx",
        "1.27",
        SHA,
        f"docker.io/library/nginx:1.27@{SHA}",
    ),
    ("bitnami/redis:7", HUB, "bitnami/redis", "7", None, "docker.io/bitnami/redis:7"),
    ("a/b/c/d", HUB, "a/b/c/d", None, None, "docker.io/a/b/c/d:latest"),
    ("library/nginx", HUB, "library/nginx", None, None, "docker.io/library/nginx:latest"),
    # Docker Hub, explicit and aliases
    ("docker.io/nginx", HUB, "library/nginx", None, None, "docker.io/library/nginx:latest"),
    ("docker.io/library/nginx", HUB, "library/nginx", None, None, "docker.io/library/nginx:latest"),
    ("index.docker.io/nginx", HUB, "library/nginx", None, None, "docker.io/library/nginx:latest"),
    ("registry-1.docker.io/x/y:1", HUB, "x/y", "1", None, "docker.io/x/y:1"),
    ("Docker.IO/bitnami/redis", HUB, "bitnami/redis", None, None, "docker.io/bitnami/redis:latest"),
    ("docker.io/a.b/c", HUB, "a.b/c", None, None, "docker.io/a.b/c:latest"),
    # other registries
    ("ghcr.io/owner/app:v1.2.3", "ghcr.io", "owner/app", "v1.2.3", None,
     "ghcr.io/owner/app:v1.2.3"),
    ("quay.io/prometheus/node-exporter", "quay.io", "prometheus/node-exporter", None, None,
     "quay.io/prometheus/node-exporter:latest"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", None,
     "registry.k8s.io/pause:3.9"),
    ("gcr.io/distroless/static", "gcr.io", "distroless/static", None, None,
     "gcr.io/distroless/static:latest"),
    ("europe-docker.pkg.dev/proj/repo/img:tag", "europe-docker.pkg.dev", "proj/repo/img", "tag",
     None, "europe-docker.pkg.dev/proj/repo/img:tag"),
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:1",
     "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "team/app", "1", None,
     "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:1"),
    ("Registry.Example.COM:5000/team/app:v1", "registry.example.com:5000", "team/app", "v1", None,
     "registry.example.com:5000/team/app:v1"),
    ("my--reg.example/x", "my--reg.example", "x", None, None, "my--reg.example/x:latest"),
    # localhost and ports
    ("localhost/foo", "localhost", "foo", None, None, "localhost/foo:latest"),
    ("LOCALHOST/foo", "localhost", "foo", None, None, "localhost/foo:latest"),
    ("localhost:5000/foo", "localhost:5000", "foo", None, None, "localhost:5000/foo:latest"),
    ("localhost:5000/foo/bar:dev", "localhost:5000", "foo/bar", "dev", None,
     "localhost:5000/foo/bar:dev"),
    ("registry:5000/app", "registry:5000", "app", None, None, "registry:5000/app:latest"),
    # a port-looking suffix without a slash is a tag on Docker Hub, as in Docker
    ("localhost:5000", HUB, "library/localhost", "5000", None, "docker.io/library/localhost:5000"),
    # IP addresses
    ("192.168.1.1/a", "192.168.1.1", "a", None, None, "192.168.1.1/a:latest"),
    (f"192.168.1.1:5000/a/b@{SHA}", "192.168.1.1:5000", "a/b", None, SHA,
     f"192.168.1.1:5000/a/b@{SHA}"),
    ("[::1]:5000/foo:tag", "[::1]:5000", "foo", "tag", None, "[::1]:5000/foo:tag"),
    ("[2001:db8::1]/foo", "[2001:db8::1]", "foo", None, None, "[2001:db8::1]/foo:latest"),
    ("[2001:DB8:0:0::1]:443/foo", "[2001:db8::1]:443", "foo", None, None,
     "[2001:db8::1]:443/foo:latest"),
    # path separators
    ("a_b/c__d/e.f/g-h/i---j", HUB, "a_b/c__d/e.f/g-h/i---j", None, None,
     "docker.io/a_b/c__d/e.f/g-h/i---j:latest"),
    ("x1/2y", HUB, "x1/2y", None, None, "docker.io/x1/2y:latest"),
    ("a", HUB, "library/a", None, None, "docker.io/library/a:latest"),
    # tags
    ("nginx:_x", HUB, "library/nginx", "_x", None, "docker.io/library/nginx:_x"),
    ("nginx:V1.0-RC_2", HUB, "library/nginx", "V1.0-RC_2", None,
     "docker.io/library/nginx:V1.0-RC_2"),
    ("nginx:" + "t" * 128, HUB, "library/nginx", "t" * 128, None,
     "docker.io/library/nginx:" + "t" * 128),
    # digests
    (f"ghcr.io/a/b@{SHA512}", "ghcr.io", "a/b", None, SHA512, f"ghcr.io/a/b@{SHA512}"),
    # 64 hex is only refused as the whole input
    (f"{HEX64}:tag", HUB, f"library/{HEX64}", "tag", None, f"docker.io/library/{HEX64}:tag"),
    (f"docker.io/library/{HEX64}", HUB, f"library/{HEX64}", None, None,
     f"docker.io/library/{HEX64}:latest"),
    # the longest name allowed: 255 characters with the domain
    ("r.io/" + "a" * 250, "r.io", "a" * 250, None, None, "r.io/" + "a" * 250 + ":latest"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest", "full"), VALID, ids=str)
def test_valid_references_parse_and_normalise(
    text: str, domain: str, path: str, tag: str | None, digest: str | None, full: str
) -> None:
    ref = parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.original == text
    assert ref.name == f"{domain}/{path}"
    assert str(ref) == full


@pytest.mark.parametrize("text", [row[0] for row in VALID], ids=str)
def test_normalising_twice_gives_the_same_reference(text: str) -> None:
    once = str(parse(text))
    assert str(parse(once)) == once
    assert str(parse(parse(text).familiar())) == once


INVALID: list[tuple[object, str]] = [
    ("", "empty"),
    (" nginx", "whitespace"),
    ("nginx ", "whitespace"),
    ("nginx\n", "whitespace"),
    ("ng inx", "invalid repository name component"),
    ("nginx:", "tag is empty"),
    ("nginx@", "digest is empty"),
    ("nginx:@" + SHA, "tag is empty"),
    (":tag", "repository name is empty"),
    ("@" + SHA, "repository name is empty"),
    ("localhost/", "repository name is empty"),
    ("UPPER/case", "must be lowercase"),
    ("Nginx", "must be lowercase"),
    ("ghcr.io/Owner/app", "must be lowercase"),
    ("a//b", "empty component"),
    ("a/", "empty component"),
    ("/a", "empty component"),
    ("-a", "invalid repository name component '-a'"),
    ("a-", "invalid repository name component 'a-'"),
    ("a.", "invalid repository name component"),
    ("a..b", "invalid repository name component"),
    ("a___b", "invalid repository name component"),
    ("a_-b", "invalid repository name component"),
    ("nginx:tag:tag", "invalid tag"),
    ("nginx:.tag", "invalid tag"),
    ("nginx:-tag", "invalid tag"),
    ("a/nginx:t/ag", "invalid tag"),
    ("nginx:t/ag", "invalid registry host 'nginx:t'"),
    ("nginx:tä", "invalid tag"),
    ("nginx:" + "t" * 129, "longer than 128"),
    ("http://nginx", "scheme"),
    ("https://ghcr.io/a/b", "scheme"),
    (HEX64, "64-byte hexadecimal"),
    ("foo:bar/baz", "invalid registry host 'foo:bar'"),
    ("ex.com:/x", "invalid registry host"),
    ("-ex.com/x", "invalid registry host"),
    ("ex-.com/x", "invalid registry host"),
    ("ex..com/x", "invalid registry host"),
    ("ex_am.com/x", "invalid registry host"),
    ("exämple.com/x", "invalid registry host"),
    ("[::1/x", "invalid registry host"),
    ("[::1]:/x", "invalid registry host"),
    ("[fe80::1%eth0]/x", "invalid registry host"),
    ("[1::2::3]/x", "invalid IPv6 address"),
    ("nginx@sha256:abc", "sha256 digest must be 64 lowercase hex"),
    ("nginx@sha256:" + "F" * 64, "sha256 digest must be 64 lowercase hex"),
    ("nginx@sha512:" + "f" * 64, "sha512 digest must be 128 lowercase hex"),
    ("nginx@sha512:" + "f" * 130, "sha512 digest must be 128 lowercase hex"),
    ("nginx@sha256:" + "f" * 128, "sha256 digest must be 64 lowercase hex"),
    ("nginx@invaliddigest:" + HEX64, "unsupported digest algorithm 'invaliddigest'"),
    ("nginx@md5:abc", "unsupported digest algorithm 'md5'"),
    ("ghcr.io/a/b@blake3:" + "a" * 64, "unsupported digest algorithm 'blake3'"),
    ("ghcr.io/a/b@multihash+base58:" + "Qm" * 16, "unsupported digest algorithm"),
    ("nginx@" + HEX64, "invalid digest"),
    ("nginx@SHA256:" + HEX64, "invalid digest"),
    ("nginx@sha256:" + HEX64 + "@x", "invalid digest"),
    ("nginx@sha256::" + HEX64, "invalid digest"),
    ("r.io/" + "a" * 251, "more than 255 characters"),
    ("a" * 240, "more than 255 characters"),  # docker.io/library/ counts
    ("a" * 5000, "longer than 4096"),
    (None, "must be a string"),
    (b"nginx", "must be a string"),
]


@pytest.mark.parametrize(("text", "reason"), INVALID, ids=repr)
def test_invalid_references_raise_invalid_reference_with_a_reason(
    text: object, reason: str
) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse(text)  # type: ignore[arg-type]
    assert reason in caught.value.reason
    assert isinstance(caught.value, SwapperError)


def test_the_error_keeps_the_reference_as_given() -> None:
    with pytest.raises(InvalidReference) as caught:
        parse("UPPER/case")
    assert caught.value.reference == "UPPER/case"
    assert "UPPER/case" in str(caught.value)


def test_a_single_component_docker_hub_name_gets_library_prefix() -> None:
    assert parse("redis").path == "library/redis"
    assert parse("docker.io/redis").path == "library/redis"
    assert parse("bitnami/redis").path == "bitnami/redis"


def test_the_first_component_is_a_registry_only_with_a_dot_a_colon_or_localhost() -> None:
    assert parse("myregistry/app").domain == HUB
    assert parse("my.registry/app").domain == "my.registry"
    assert parse("myregistry:80/app").domain == "myregistry:80"
    assert parse("localhost/app").domain == "localhost"
    assert parse("localhostx/app").domain == HUB


def test_references_are_immutable_and_parsing_is_cached() -> None:
    ref = parse("nginx:1.27")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "x"  # type: ignore[misc]
    assert parse("nginx:1.27") is ref
    assert parse("docker.io/library/nginx:1.27") == dataclasses.replace(
        ref, original="docker.io/library/nginx:1.27"
    )


@pytest.mark.parametrize(
    ("text", "familiar"),
    [
        ("nginx:1.27", "nginx:1.27"),
        ("docker.io/library/nginx", "nginx:latest"),
        (f"nginx@{SHA}", f"nginx@{SHA}"),
        ("bitnami/redis:7", "bitnami/redis:7"),
        ("library/a/b", "library/a/b:latest"),
        ("docker.io/a.b/c", "docker.io/a.b/c:latest"),
        ("docker.io/localhost/c", "docker.io/localhost/c:latest"),
        ("ghcr.io/a/b:1", "ghcr.io/a/b:1"),
        ("localhost:5000/foo", "localhost:5000/foo:latest"),
    ],
)
def test_familiar_is_the_short_docker_form_on_docker_hub_and_str_elsewhere(
    text: str, familiar: str
) -> None:
    assert parse(text).familiar() == familiar


@pytest.mark.parametrize(
    ("text", "mirror_path"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("ghcr.io/owner/app:1", "ghcr.io/owner/app"),
        ("quay.io/a/b", "quay.io/a/b"),
        ("localhost/foo", "localhost/foo"),
        ("localhost:5000/foo", "localhost_5000/foo"),
        ("Registry.Example.COM:5000/team/app", "registry.example.com_5000/team/app"),
        ("[::1]:5000/foo", "0000-0000-0000-0000-0000-0000-0000-0001_5000/foo"),
        ("[2001:db8::1]/foo", "2001-0db8-0000-0000-0000-0000-0000-0001/foo"),
    ],
)
def test_the_mirror_path_turns_the_domain_into_a_path_component(
    text: str, mirror_path: str
) -> None:
    assert parse(text).mirror_path() == mirror_path


@pytest.mark.parametrize("text", [row[0] for row in VALID if len(row[2]) < 200], ids=str)
def test_every_mirror_path_is_a_valid_repository_path(text: str) -> None:
    mirrored = parse(f"mirror.example/{parse(text).mirror_path()}")
    assert mirrored.path == parse(text).mirror_path()


@pytest.mark.parametrize(
    ("text", "endpoint", "target"),
    [
        ("nginx:1.27", "reg.io", "reg.io/docker.io/library/nginx:1.27"),
        (f"nginx@{SHA}", "reg.io", f"reg.io/docker.io/library/nginx@{SHA}"),
        (f"nginx:1.27@{SHA}", "reg.io", f"reg.io/docker.io/library/nginx:1.27@{SHA}"),
        ("nginx", "reg.io", "reg.io/docker.io/library/nginx:latest"),
        ("localhost:5000/foo:v", "reg.io", "reg.io/localhost_5000/foo:v"),
        ("[::1]:5000/foo:v", "reg.io", "reg.io/0000-0000-0000-0000-0000-0000-0000-0001_5000/foo:v"),
        ("ghcr.io/a/b:1", "registry.local:5000/mirror", "registry.local:5000/mirror/ghcr.io/a/b:1"),
        ("ghcr.io/a/b:1", "europe-docker.pkg.dev/proj/repo",
         "europe-docker.pkg.dev/proj/repo/ghcr.io/a/b:1"),
        ("quay.io/a/b", "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
         "123456789012.dkr.ecr.eu-west-1.amazonaws.com/quay.io/a/b:latest"),
    ],
)  # fmt: skip
def test_the_target_reference_keeps_tag_and_digest_under_the_endpoint(
    text: str, endpoint: str, target: str
) -> None:
    assert target_reference(parse(text), endpoint) == target


def test_a_target_reference_parses_back_to_the_mirror_path() -> None:
    ref = parse(f"[::1]:5000/team/app:1.0@{SHA}")
    target = parse(target_reference(ref, "registry.local:5000/mirror"))
    assert target.domain == "registry.local:5000"
    assert target.path == "mirror/0000-0000-0000-0000-0000-0000-0000-0001_5000/team/app"
    assert (target.tag, target.digest) == ("1.0", SHA)
    assert is_at_endpoint(target, "registry.local:5000/mirror")


@pytest.mark.parametrize(
    ("text", "endpoint", "expected"),
    [
        ("reg.io/docker.io/library/nginx:1", "reg.io", True),
        ("reg.io/x", "reg.io", True),
        ("reg.io:5000/x", "reg.io", False),
        ("reg.io/x", "reg.io:5000", False),
        ("other.io/reg.io/x", "reg.io", False),
        ("reg.iox/x", "reg.io", False),
        ("nginx", "reg.io", False),
        ("REG.IO/x", "reg.io", True),
        ("reg.io/x", "Reg.IO", True),
        ("registry.local:5000/mirror/x", "registry.local:5000/mirror", True),
        ("registry.local:5000/mirror", "registry.local:5000/mirror", True),
        ("registry.local:5000/other/x", "registry.local:5000/mirror", False),
        ("reg.io/mirror2/x", "reg.io/mirror", False),
        ("reg.io/mirror/x", "reg.io/mirror/", True),
        ("nginx", "docker.io", True),
        ("nginx", "index.docker.io", True),
        ("myorg/app", "docker.io/myorg", True),
        ("index.docker.io/myorg/app", "registry-1.docker.io/myorg", True),
        ("myorg/app", "docker.io/other", False),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker.io/library/nginx",
         "123456789012.dkr.ecr.eu-west-1.amazonaws.com", True),
        ("123456789012.dkr.ecr.eu-west-2.amazonaws.com/x",
         "123456789012.dkr.ecr.eu-west-1.amazonaws.com", False),
        ("europe-docker.pkg.dev/proj/repo/ghcr.io/a/b", "europe-docker.pkg.dev/proj/repo", True),
        ("europe-docker.pkg.dev/proj/repo2/a", "europe-docker.pkg.dev/proj/repo", False),
        ("europe-docker.pkg.dev/proj/a", "europe-docker.pkg.dev/proj/repo", False),
        ("[::1]:5000/x", "[0:0::1]:5000", True),
        ("reg.io/x", "", False),
    ],
)  # fmt: skip
def test_is_at_endpoint_matches_whole_components_of_host_and_prefix(
    text: str, endpoint: str, expected: bool
) -> None:
    assert is_at_endpoint(parse(text), endpoint) is expected


def test_a_reference_can_be_built_directly() -> None:
    ref = ImageReference(domain="ghcr.io", path="a/b", tag=None, digest=SHA, original="x")
    assert str(ref) == f"ghcr.io/a/b@{SHA}"
    assert ref.familiar() == f"ghcr.io/a/b@{SHA}"


async def test_an_image_whose_digest_algorithm_is_not_registered_is_not_mirrored() -> None:
    from helpers import make_pod, make_review

    from swapper.config import CopyPolicy, SwapPolicy
    from swapper.filters import Filters
    from swapper.mirror.memory import MemoryCopyQueue
    from swapper.mutation import Mutator, Outcome, Policy, requester_of
    from swapper.targets.memory import MemoryTarget

    endpoint = "mirror.local:5000/m"
    target = MemoryTarget(endpoint)
    queue = MemoryCopyQueue(target)
    policy = Policy(endpoint, SwapPolicy.ALWAYS, CopyPolicy.IMMEDIATE, 1.0, None, Filters([]))
    mutator = Mutator(policy, target, queue)
    review = make_review(make_pod(f"nginx@invaliddigest:{HEX64}"))
    settled, candidates = mutator.plan(review.object, review.namespace)
    who = requester_of(review.object, review.namespace)
    decisions = settled + await mutator.resolve(candidates, who, True)
    assert [d.outcome for d in decisions] == [Outcome.INVALID_REFERENCE]
    assert "unsupported digest algorithm 'invaliddigest'" in decisions[0].detail
    assert queue.jobs == []


@pytest.mark.parametrize(
    "source",
    [
        "docker.io/library/nginx:1.27",
        "localhost:5000/team/app@sha256:" + "a" * 64,
        "[::1]:5000/x:1",
        "ghcr.io/o/r:t@sha256:" + "b" * 64,
    ],
)
def test_the_source_of_a_mirror_reference_is_the_image_it_was_made_from(source: str) -> None:
    ref = parse(source)
    mirrored = parse(target_reference(ref, "reg.io:443/mirror"))
    assert str(source_of_mirror(mirrored, "reg.io:443/mirror")) == str(ref)


@pytest.mark.parametrize(
    "image", ["reg.io:443/mirror/team/app:1", "reg.io:443/other/docker.io/x:1", "nginx"]
)
def test_an_image_outside_the_mirror_paths_has_no_source(image: str) -> None:
    assert source_of_mirror(parse(image), "reg.io:443/mirror") is None
