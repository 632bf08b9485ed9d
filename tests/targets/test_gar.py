"""The Google Artifact Registry target, against wire-level fakes of Google on loopback.

The real ``google-cloud-artifact-registry`` client talks gRPC to :class:`FakeArtifactRegistry`;
real ``google-auth`` loads a service-account key from ``GOOGLE_APPLICATION_CREDENTIALS`` and
signs its token requests to :class:`TokenEndpoint`; images are pushed by the copy engine into
a real ``docker-registry`` that wants the access token as the ``oauth2accesstoken`` password.
Token renewal runs on a controllable clock.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from gar_fake import (
    FakeArtifactRegistry,
    Repository,
    TokenEndpoint,
    service_account_file,
    token_for,
)
from registries import Registry, make_image, make_layer, push_image, start_registry

from swapper.cli import build_target
from swapper.config import GCPRegistry, load_config
from swapper.credentials import Credentials
from swapper.errors import ConfigError, RegistryError
from swapper.images import parse
from swapper.oci import CopyEngine, HostConfig, RegistryClient
from swapper.targets.base import TargetRegistry
from swapper.targets.gar import CLOUD_PLATFORM_SCOPE, GARTarget

REPOSITORY = "projects/proj/locations/europe-west1/repositories/mirror"
PARENT = "projects/proj/locations/europe-west1"


def gcp_config(**keys: Any) -> GCPRegistry:
    """``target.gcp`` validated exactly as a config file is."""
    gcp = {"location": "europe-west1", "projectId": "proj", "repositoryId": "mirror", **keys}
    config = load_config({"target": {"type": "gcp", "gcp": gcp}})
    assert config.target.gcp is not None
    return config.target.gcp


def config_problem(**keys: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        gcp_config(**keys)
    return str(caught.value)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def tokens() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint().start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def google_env(
    tokens: TokenEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> TokenEndpoint:
    """Google's default credentials are a service-account key whose token_uri is ours."""
    key = service_account_file(tmp_path / "key.json", tokens.url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    return tokens


@pytest.fixture
def api(tokens: TokenEndpoint) -> Iterator[FakeArtifactRegistry]:
    fake = FakeArtifactRegistry(valid_token=lambda token: token in tokens.issued).start()
    yield fake
    fake.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeTarget = Callable[..., GARTarget]


@pytest.fixture
async def make_target(
    api: FakeArtifactRegistry, google_env: TokenEndpoint, clock: FakeClock
) -> AsyncIterator[MakeTarget]:
    made: list[GARTarget] = []

    def make(
        hosts: dict[str, HostConfig] | None = None, api_timeout: float = 5.0, **keys: Any
    ) -> GARTarget:
        keys.setdefault("endpoint", api.endpoint)
        target = GARTarget(gcp_config(**keys), hosts=hosts, clock=clock, api_timeout=api_timeout)
        made.append(target)
        return target

    yield make
    for target in made:
        await target.aclose()


# -- config -------------------------------------------------------------------------------


def test_the_endpoint_is_location_docker_pkg_dev_project_repository_and_prefix() -> None:
    config = gcp_config(prefix="k8s")
    assert config.endpoint == "europe-west1-docker.pkg.dev/proj/mirror/k8s"


def test_registry_host_replaces_the_docker_host_in_the_endpoint() -> None:
    config = gcp_config(registryHost="127.0.0.1:5000")
    assert config.endpoint == "127.0.0.1:5000/proj/mirror"


def test_a_registry_host_with_a_path_is_refused() -> None:
    assert "target.gcp.registryHost: 'reg.local/x' is not HOST[:PORT]" in config_problem(
        registryHost="reg.local/x"
    )


def test_a_plaintext_api_endpoint_is_refused_unless_it_is_loopback() -> None:
    assert "only allowed to a loopback host" in config_problem(endpoint="http://10.0.0.1:8080")
    assert gcp_config(endpoint="http://127.0.0.1:8080").endpoint_override


def test_label_keys_must_start_with_a_lowercase_letter() -> None:
    problem = config_problem(createRepository=True, labels={"Team": "x"})
    assert "target.gcp.labels: label key 'Team' must start with a lowercase letter" in problem


def test_label_values_may_hold_only_lowercase_letters_digits_underscores_and_dashes() -> None:
    problem = config_problem(createRepository=True, labels={"team": "a.b"})
    assert "label team: value 'a.b' may hold only" in problem


def test_label_values_longer_than_63_characters_are_refused() -> None:
    problem = config_problem(createRepository=True, labels={"team": "a" * 64})
    assert "longer than 63 characters" in problem


def test_more_than_64_labels_are_refused() -> None:
    labels = {f"k{i}": "v" for i in range(65)}
    assert "at most 64" in config_problem(createRepository=True, labels=labels)


def test_international_lowercase_labels_and_empty_values_are_accepted() -> None:
    config = gcp_config(createRepository=True, labels={"équipe": "", "env": "prod-1_a"})
    assert config.labels == {"équipe": "", "env": "prod-1_a"}


def test_creation_settings_without_create_repository_are_warnings_not_refusals() -> None:
    gcp = {"location": "europe-west1", "projectId": "proj", "repositoryId": "mirror"}
    config = load_config(
        {"target": {"type": "gcp", "gcp": {**gcp, "immutableTags": True, "description": "d"}}}
    )
    assert [key for key, _ in config.warnings] == [
        "target.gcp.description",
        "target.gcp.immutableTags",
    ]
    assert all("createRepository: true" in message for _, message in config.warnings)


# -- the Artifact Registry repository -----------------------------------------------------


async def test_an_existing_docker_repository_is_accepted_without_creating_one(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.add_repository(REPOSITORY)
    await make_target(createRepository=True).ensure_repository("proj/mirror/docker.io/nginx")
    assert [c.method for c in api.calls] == ["GetRepository"]
    assert api.calls[0].name == REPOSITORY


async def test_the_repository_is_checked_once_then_answered_from_memory(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.add_repository(REPOSITORY)
    target = make_target()
    for path in ("docker.io/library/nginx", "ghcr.io/acme/api", "docker.io/library/nginx"):
        await target.ensure_repository(f"proj/mirror/{path}")
    assert api.count("GetRepository") == 1


async def test_concurrent_first_uses_share_one_repository_check(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.add_repository(REPOSITORY)
    target = make_target()
    await asyncio.gather(*(target.ensure_repository(f"proj/mirror/app{i}") for i in range(10)))
    assert api.count("GetRepository") == 1


async def test_api_calls_carry_the_access_token_from_google_default_credentials(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.add_repository(REPOSITORY)
    await make_target().start()
    assert api.calls[0].token == token_for(1)


async def test_a_missing_repository_without_create_repository_is_a_clear_error(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    with pytest.raises(RegistryError, match=r"does not exist.*createRepository: true"):
        await make_target().ensure_repository("proj/mirror/nginx")
    assert api.count("CreateRepository") == 0


async def test_a_missing_repository_is_created_as_docker_with_its_configured_settings(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    target = make_target(
        createRepository=True,
        labels={"managed-by": "swapper", "team": "platform"},
        description="Images mirrored by swapper",
        immutableTags=True,
    )
    await target.ensure_repository("proj/mirror/nginx")
    created = api.repositories[REPOSITORY]
    assert created.format_ == Repository.Format.DOCKER
    assert created.mode == Repository.Mode.STANDARD_REPOSITORY
    assert dict(created.labels) == {"managed-by": "swapper", "team": "platform"}
    assert created.description == "Images mirrored by swapper"
    assert created.docker_config.immutable_tags is True


async def test_a_creation_still_running_is_waited_for_until_its_operation_is_done(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.pending_creations = 1
    await make_target(createRepository=True).ensure_repository("proj/mirror/nginx")
    assert api.count("GetOperation") == 1


async def test_a_repository_created_meanwhile_by_another_replica_counts_as_created(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.add_repository(REPOSITORY)
    api.fail["GetRepository"] = [grpc.StatusCode.NOT_FOUND]  # not there yet when asked
    target = make_target(createRepository=True)
    await target.ensure_repository("proj/mirror/nginx")  # CreateRepository: ALREADY_EXISTS
    await target.ensure_repository("proj/mirror/redis")
    assert [c.method for c in api.calls] == ["GetRepository", "CreateRepository"]


async def test_permission_denied_on_reading_the_repository_names_the_permission(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.fail["GetRepository"] = [grpc.StatusCode.PERMISSION_DENIED]
    with pytest.raises(
        RegistryError, match=r"refused to read .*artifactregistry\.repositories\.get"
    ):
        await make_target().ensure_repository("proj/mirror/nginx")


async def test_permission_denied_on_creating_names_the_create_permission(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.fail["CreateRepository"] = [grpc.StatusCode.PERMISSION_DENIED]
    with pytest.raises(
        RegistryError, match=r"refused to create .*artifactregistry\.repositories\.create"
    ):
        await make_target(createRepository=True).ensure_repository("proj/mirror/nginx")
    assert REPOSITORY not in api.repositories


async def test_a_failed_check_is_remembered_briefly_then_tried_again(
    make_target: MakeTarget, api: FakeArtifactRegistry, clock: FakeClock
) -> None:
    api.add_repository(REPOSITORY)
    api.fail["GetRepository"] = [grpc.StatusCode.PERMISSION_DENIED]
    target = make_target()
    with pytest.raises(RegistryError, match="refused to read"):
        await target.ensure_repository("proj/mirror/nginx")
    with pytest.raises(RegistryError, match=r"refused to read .* \(asked again in 30s\)"):
        await target.ensure_repository("proj/mirror/nginx")
    assert api.count("GetRepository") == 1
    clock.advance(31)
    await target.ensure_repository("proj/mirror/nginx")
    assert api.count("GetRepository") == 2


async def test_a_transient_unavailable_answer_is_tried_again(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.add_repository(REPOSITORY)
    api.fail["GetRepository"] = [grpc.StatusCode.UNAVAILABLE]
    await make_target().ensure_repository("proj/mirror/nginx")
    assert api.count("GetRepository") == 2


async def test_a_repository_of_another_format_is_refused(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.add_repository(REPOSITORY, format_=Repository.Format.MAVEN)
    with pytest.raises(RegistryError, match="holds MAVEN packages, not Docker images"):
        await make_target().ensure_repository("proj/mirror/nginx")


async def test_a_remote_repository_is_refused_because_nothing_can_be_pushed_to_it(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.add_repository(REPOSITORY, mode=Repository.Mode.REMOTE_REPOSITORY)
    with pytest.raises(RegistryError, match="is a REMOTE_REPOSITORY"):
        await make_target().ensure_repository("proj/mirror/nginx")


async def test_credentials_the_api_rejects_are_a_clear_error(
    make_target: MakeTarget, api: FakeArtifactRegistry
) -> None:
    api.add_repository(REPOSITORY)
    api.valid_token = lambda token: False
    with pytest.raises(RegistryError, match="did not accept swapper's Google credentials"):
        await make_target().ensure_repository("proj/mirror/nginx")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback port that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in accepted:
        conn.close()
    listener.close()


async def test_an_api_that_does_not_answer_is_an_error_within_the_timeout(
    make_target: MakeTarget, silent_server: str
) -> None:
    target = make_target(endpoint=silent_server, api_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RegistryError, match="Artifact Registry API"):
        await target.ensure_repository("proj/mirror/nginx")
    assert time.monotonic() - started < 5


# -- the access token ---------------------------------------------------------------------


async def test_pull_credentials_are_oauth2accesstoken_and_a_google_access_token(
    make_target: MakeTarget, tokens: TokenEndpoint
) -> None:
    before = datetime.now(UTC)
    credentials = await make_target().pull_credentials()
    assert (credentials.username, credentials.password) == ("oauth2accesstoken", token_for(1))
    assert credentials.expires_at is not None
    assert 3590 <= (credentials.expires_at - before).total_seconds() <= 3610


async def test_the_token_is_asked_for_with_the_cloud_platform_scope(
    make_target: MakeTarget, tokens: TokenEndpoint
) -> None:
    await make_target().pull_credentials()
    assert tokens.assertions[0]["scope"] == CLOUD_PLATFORM_SCOPE
    assert tokens.assertions[0]["iss"] == "swapper@proj.iam.gserviceaccount.com"


async def test_the_token_is_reused_until_a_quarter_hour_before_it_expires(
    make_target: MakeTarget, tokens: TokenEndpoint, clock: FakeClock
) -> None:
    target = make_target()
    await target.pull_credentials()
    clock.advance(3600 - 900 - 5)
    assert (await target.pull_credentials()).password == token_for(1)
    clock.advance(10)
    assert (await target.pull_credentials()).password == token_for(2)
    assert tokens.fetches == 2


async def test_a_short_lived_token_is_renewed_at_half_its_life(
    make_target: MakeTarget, tokens: TokenEndpoint, clock: FakeClock
) -> None:
    tokens.ttl = 600
    target = make_target()
    await target.pull_credentials()
    clock.advance(295)
    assert (await target.pull_credentials()).password == token_for(1)
    clock.advance(10)
    assert (await target.pull_credentials()).password == token_for(2)


async def test_concurrent_callers_share_one_token_refresh(
    make_target: MakeTarget, tokens: TokenEndpoint
) -> None:
    tokens.hold = threading.Event()
    target = make_target()
    callers = [asyncio.create_task(target.pull_credentials()) for _ in range(20)]
    assert await asyncio.to_thread(tokens.waiting.acquire, timeout=10)  # one fetch is in flight
    await asyncio.sleep(0)  # let every caller reach the shared refresh
    tokens.hold.set()
    answers = await asyncio.gather(*callers)
    assert {a.password for a in answers} == {token_for(1)}
    assert tokens.fetches == 1


async def test_a_refused_token_request_is_a_clear_error(
    make_target: MakeTarget, tokens: TokenEndpoint
) -> None:
    tokens.error = (400, "invalid_grant")
    with pytest.raises(RegistryError, match="refreshing the Google access token failed"):
        await make_target().pull_credentials()


async def test_after_a_failed_refresh_the_next_caller_refreshes_again(
    make_target: MakeTarget, tokens: TokenEndpoint
) -> None:
    target = make_target()
    tokens.error = (400, "invalid_grant")
    with pytest.raises(RegistryError):
        await target.pull_credentials()
    tokens.error = None
    assert (await target.pull_credentials()).password == token_for(1)


async def test_missing_default_credentials_are_a_clear_error(
    make_target: MakeTarget, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(RegistryError, match=r"no Google credentials.*Workload Identity"):
        await make_target().pull_credentials()


# -- images: pushed with the token, checked with it ---------------------------------------


@pytest.fixture
def registries(tmp_path: Path) -> Iterator[tuple[Registry, Registry]]:
    """An anonymous source and a target that wants ``oauth2accesstoken:<first token>``."""
    source = start_registry(tmp_path / "source")
    try:
        target = start_registry(tmp_path / "target", users={"oauth2accesstoken": token_for(1)})
    except BaseException:
        source.stop()
        raise
    yield source, target
    target.stop()
    source.stop()


async def copy_with_gar_token(
    gar: GARTarget, source: Registry, target_registry: Registry, image: str
) -> str:
    """Copy ``source/<image>`` to its mirror name with the engine; returns the mirror ref."""
    plain = {r.host: HostConfig(plain_http=True) for r in (source, target_registry)}

    async def credentials(host: str) -> Credentials | None:
        if host != gar.config.domain:
            return None
        token = await gar.pull_credentials()
        return Credentials(token.username, token.password)

    mirror = f"{gar.endpoint}/{source.host.replace(':', '_')}/{image}"
    async with RegistryClient(hosts=plain, credentials=credentials) as client:
        await CopyEngine(client).copy(f"{source.host}/{image}", mirror)
    return mirror


async def test_an_image_copied_with_the_token_exists_by_tag_and_by_digest(
    make_target: MakeTarget, registries: tuple[Registry, Registry]
) -> None:
    source, target_registry = registries
    image = make_image([make_layer("gar-e2e")])
    digest = push_image(source, "app", image, "1.0")
    gar = make_target(
        registryHost=target_registry.host,
        hosts={target_registry.host: HostConfig(plain_http=True)},
    )
    mirror = await copy_with_gar_token(gar, source, target_registry, "app:1.0")
    assert gar.is_origin(parse(mirror))
    assert await gar.image_exists(mirror) is True
    assert await gar.image_exists(mirror.replace(":1.0", f"@{digest}")) is True


async def test_a_tag_that_was_not_copied_does_not_exist(
    make_target: MakeTarget, registries: tuple[Registry, Registry]
) -> None:
    source, target_registry = registries
    push_image(source, "app", make_image([make_layer("gar-absent")]), "1.0")
    gar = make_target(
        registryHost=target_registry.host,
        hosts={target_registry.host: HostConfig(plain_http=True)},
    )
    mirror = await copy_with_gar_token(gar, source, target_registry, "app:1.0")
    assert await gar.image_exists(mirror.replace(":1.0", ":2.0")) is False


async def test_an_existence_check_the_registry_refuses_names_the_permission(
    make_target: MakeTarget, tmp_path: Path
) -> None:
    registry = start_registry(tmp_path / "other", users={"oauth2accesstoken": "another-token"})
    try:
        gar = make_target(
            registryHost=registry.host, hosts={registry.host: HostConfig(plain_http=True)}
        )
        with pytest.raises(RegistryError, match=r"repositories\.downloadArtifacts"):
            await gar.image_exists(f"{registry.host}/proj/mirror/docker.io/library/nginx:1.27")
    finally:
        registry.stop()


# -- swapper serve ------------------------------------------------------------------------


async def test_swapper_serve_builds_an_artifact_registry_target_for_type_gcp() -> None:
    gcp = {"location": "us", "projectId": "proj", "repositoryId": "mirror", "prefix": "k8s"}
    target = build_target(load_config({"target": {"type": "gcp", "gcp": gcp}}))
    try:
        assert isinstance(target, GARTarget)
        assert isinstance(target, TargetRegistry)
        assert target.endpoint == "us-docker.pkg.dev/proj/mirror/k8s"
    finally:
        await target.aclose()
