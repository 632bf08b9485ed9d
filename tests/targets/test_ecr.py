"""The ECR target against moto in server mode on loopback (the ECR and STS control plane),
with a real ``docker-registry`` as the data plane for the end-to-end push.

API calls are counted with botocore event hooks on the target's own client
(:class:`moto_ecr.CallLog`); botocore's Stubber is used only for the errors moto cannot produce
(throttling, access denied).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from helpers import Clock
from moto_ecr import ACCOUNT, REGION, CallLog, MotoServer, running_moto
from registries import FaultProxy, get_manifest, make_image, make_layer, push_image, start_registry

from swapper.config import AWSRegistry, load_config
from swapper.errors import RegistryError
from swapper.images import parse, target_reference
from swapper.oci import CopyEngine, RegistryClient, static_credentials
from swapper.targets.base import TargetRegistry
from swapper.targets.ecr import ECRTarget
from swapper.wiring import registry_hosts, target_credentials

ACCESS_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "NodesPull",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        }
    ],
}
LIFECYCLE_POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "expire untagged images",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 7,
            },
            "action": {"type": "expire"},
        }
    ]
}
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
REPO = "mirror/docker.io/library/nginx"
# moto answers every GetAuthorizationToken with this expiry; a clock 12 h before it sees a
# token with ECR's real lifetime.
MOTO_TOKEN_EXPIRY = dt.datetime(2015, 1, 1, tzinfo=dt.UTC).timestamp()


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with running_moto() as server:
        yield server


@pytest.fixture(autouse=True)
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Dummy credentials in the environment, nothing of the machine's AWS set-up, a clean moto."""
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto.environment().items():
        monkeypatch.setenv(name, value)
    moto.reset()
    return moto


@pytest.fixture
def clock() -> Clock:
    return Clock(MOTO_TOKEN_EXPIRY - 12 * 3600)


def aws_config(moto: MotoServer, **keys: Any) -> AWSRegistry:
    return AWSRegistry.model_validate(
        {"accountId": ACCOUNT, "region": REGION, "endpointUrl": moto.url, **keys}
    )


Make = Callable[..., ECRTarget]


@pytest.fixture
async def make(moto: MotoServer, clock: Clock) -> AsyncIterator[Make]:
    """Builds ECR targets (config keys as keyword arguments) and closes them after the test."""
    made: list[ECRTarget] = []

    def build(ttl: float = 600.0, **keys: Any) -> ECRTarget:
        target = ECRTarget(aws_config(moto, **keys), repository_ttl=ttl, clock=clock)
        made.append(target)
        return target

    yield build
    for target in made:
        await target.aclose()


def full_options() -> dict[str, Any]:
    return {
        "tags": [{"key": "team", "value": "platform"}, {"key": "managed-by", "value": "swapper"}],
        "imageTagMutability": "IMMUTABLE",
        "imageScanningConfiguration": {"imageScanOnPush": False},
        "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": KMS_KEY},
        "accessPolicy": json.dumps(ACCESS_POLICY),
        "lifecyclePolicy": json.dumps(LIFECYCLE_POLICY),
    }


def policies() -> dict[str, Any]:
    return {
        "ecrOptions": {
            "accessPolicy": json.dumps(ACCESS_POLICY),
            "lifecyclePolicy": json.dumps(LIFECYCLE_POLICY),
        }
    }


def current_policies(moto: MotoServer, repository: str = REPO) -> tuple[Any, Any]:
    ecr = moto.client()
    access = ecr.get_repository_policy(repositoryName=repository)["policyText"]
    lifecycle = ecr.get_lifecycle_policy(repositoryName=repository)["lifecyclePolicyText"]
    return json.loads(access), json.loads(lifecycle)


# -- naming ---------------------------------------------------------------------------------


def test_the_endpoint_is_the_ecr_domain_of_the_account_and_region_with_the_prefix(
    moto: MotoServer,
) -> None:
    target = ECRTarget(aws_config(moto, prefix="mirror"))
    assert target.endpoint == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mirror"


def test_a_cn_region_uses_the_amazonaws_com_cn_domain_and_api() -> None:
    config = AWSRegistry.model_validate({"accountId": ACCOUNT, "region": "cn-north-1"})
    target = ECRTarget(config)
    assert target.endpoint == f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn"
    assert target.client.meta.endpoint_url == "https://api.ecr.cn-north-1.amazonaws.com.cn"


def test_the_registry_id_names_the_registry_instead_of_the_account(moto: MotoServer) -> None:
    target = ECRTarget(aws_config(moto, registryId="210987654321"))
    assert target.endpoint == f"210987654321.dkr.ecr.{REGION}.amazonaws.com"


def test_registry_host_replaces_the_host_images_are_pushed_to_and_pulled_from(
    moto: MotoServer,
) -> None:
    target = ECRTarget(aws_config(moto, registryHost="127.0.0.1:5000", prefix="m"))
    assert target.endpoint == "127.0.0.1:5000/m"
    assert target.is_origin(parse("127.0.0.1:5000/m/docker.io/library/nginx:1.27"))
    assert not target.is_origin(parse(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/m/x:1"))


def test_images_under_the_endpoint_are_origin_and_others_are_not(moto: MotoServer) -> None:
    target = ECRTarget(aws_config(moto, prefix="mirror"))
    assert target.is_origin(parse(f"{target.endpoint}/docker.io/library/nginx:1.27"))
    assert not target.is_origin(parse("nginx:1.27"))
    assert not target.is_origin(parse(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/other/x:1"))


# -- repositories ---------------------------------------------------------------------------


async def test_a_new_repository_is_created_with_every_ecr_option(
    make: Make, moto: MotoServer
) -> None:
    await make(ecrOptions=full_options()).ensure_repository(REPO)
    ecr = moto.client()
    repo = ecr.describe_repositories(repositoryNames=[REPO])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": KMS_KEY}
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [
        ("managed-by", "swapper"),
        ("team", "platform"),
    ]


async def test_a_new_repository_gets_the_access_and_lifecycle_policies(
    make: Make, moto: MotoServer
) -> None:
    await make(ecrOptions=full_options()).ensure_repository(REPO)
    assert current_policies(moto) == (ACCESS_POLICY, LIFECYCLE_POLICY)


async def test_default_options_create_a_mutable_scanned_aes256_repository(
    make: Make, moto: MotoServer
) -> None:
    await make().ensure_repository(REPO)
    repo = moto.client().describe_repositories(repositoryNames=[REPO])["repositories"][0]
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}


async def test_policies_given_next_to_the_account_id_are_applied_too(
    make: Make, moto: MotoServer
) -> None:
    target = make(
        accessPolicy=json.dumps(ACCESS_POLICY), lifecyclePolicy=json.dumps(LIFECYCLE_POLICY)
    )
    await target.ensure_repository(REPO)
    assert current_policies(moto) == (ACCESS_POLICY, LIFECYCLE_POLICY)


async def test_a_repository_that_already_exists_counts_as_ensured_and_is_left_as_it_was(
    make: Make, moto: MotoServer
) -> None:
    moto.client().create_repository(repositoryName=REPO, imageTagMutability="MUTABLE")
    target = make(ecrOptions={"imageTagMutability": "IMMUTABLE"})
    calls = CallLog(target.client)
    await target.ensure_repository(REPO)
    assert calls["CreateRepository"] == 1  # answered RepositoryAlreadyExistsException
    repo = moto.client().describe_repositories(repositoryNames=[REPO])["repositories"][0]
    assert repo["imageTagMutability"] == "MUTABLE"


async def test_policies_are_applied_to_a_repository_that_already_exists(
    make: Make, moto: MotoServer
) -> None:
    moto.client().create_repository(repositoryName=REPO)
    await make(**policies()).ensure_repository(REPO)
    assert current_policies(moto) == (ACCESS_POLICY, LIFECYCLE_POLICY)


async def test_policies_changed_behind_swappers_back_are_restored_after_the_ttl(
    make: Make, moto: MotoServer, clock: Clock
) -> None:
    target = make(ttl=300, **policies())
    await target.ensure_repository(REPO)
    ecr = moto.client()
    drifted_access = {**ACCESS_POLICY, "Statement": [{**ACCESS_POLICY["Statement"][0], "Sid": "X"}]}
    ecr.set_repository_policy(repositoryName=REPO, policyText=json.dumps(drifted_access))
    ecr.put_lifecycle_policy(
        repositoryName=REPO,
        lifecyclePolicyText=json.dumps(
            {"rules": [{**LIFECYCLE_POLICY["rules"][0], "rulePriority": 9}]}
        ),
    )
    clock.advance(301)
    await target.ensure_repository(REPO)
    assert current_policies(moto) == (ACCESS_POLICY, LIFECYCLE_POLICY)


async def test_policies_removed_behind_swappers_back_are_put_back_after_the_ttl(
    make: Make, moto: MotoServer, clock: Clock
) -> None:
    target = make(ttl=300, **policies())
    await target.ensure_repository(REPO)
    moto.client().delete_repository_policy(repositoryName=REPO)
    moto.client().delete_lifecycle_policy(repositoryName=REPO)
    clock.advance(301)
    await target.ensure_repository(REPO)
    assert current_policies(moto) == (ACCESS_POLICY, LIFECYCLE_POLICY)


async def test_drift_within_the_ttl_is_not_looked_at(
    make: Make, moto: MotoServer, clock: Clock
) -> None:
    target = make(ttl=300, **policies())
    await target.ensure_repository(REPO)
    moto.client().delete_repository_policy(repositoryName=REPO)
    calls = CallLog(target.client)
    clock.advance(299)
    await target.ensure_repository(REPO)
    assert calls.total == 0


async def test_policies_equal_as_json_are_not_written_again(make: Make, moto: MotoServer) -> None:
    ecr = moto.client()
    ecr.create_repository(repositoryName=REPO)
    # the same documents, laid out differently: other whitespace, other key order
    ecr.set_repository_policy(
        repositoryName=REPO,
        policyText=json.dumps(ACCESS_POLICY, indent=4, sort_keys=True),
    )
    ecr.put_lifecycle_policy(
        repositoryName=REPO,
        lifecyclePolicyText=json.dumps(
            {"rules": [dict(reversed(LIFECYCLE_POLICY["rules"][0].items()))]},
            separators=(",", ":"),
        ),
    )
    target = make(**policies())
    calls = CallLog(target.client)
    await target.ensure_repository(REPO)
    assert calls["SetRepositoryPolicy"] == 0
    assert calls["PutLifecyclePolicy"] == 0
    assert calls["GetRepositoryPolicy"] == 1
    assert calls["GetLifecyclePolicy"] == 1


async def test_an_ensured_repository_costs_no_api_call_within_the_ttl(make: Make) -> None:
    target = make(ttl=300, **policies())
    await target.ensure_repository(REPO)
    calls = CallLog(target.client)
    for _ in range(50):
        await target.ensure_repository(REPO)
    assert calls.total == 0


async def test_concurrent_ensures_of_one_repository_share_one_check(make: Make) -> None:
    target = make(**policies())
    calls = CallLog(target.client)
    await asyncio.gather(*(target.ensure_repository(REPO) for _ in range(20)))
    assert calls["CreateRepository"] == 1
    assert calls.total == 3  # create, set the access policy, put the lifecycle policy


async def test_a_repository_name_ecr_refuses_surfaces_as_a_registry_error(make: Make) -> None:
    with pytest.raises(RegistryError, match="CreateRepository failed: InvalidParameterException"):
        await make().ensure_repository("Upper/Case")


# -- existence ------------------------------------------------------------------------------


async def test_an_image_in_the_repository_exists_by_tag_and_by_digest(
    make: Make, moto: MotoServer
) -> None:
    target = make(prefix="mirror")
    await target.ensure_repository(REPO)
    digest = moto.put_image(REPO, "1.27")
    assert await target.image_exists(f"{target.endpoint}/docker.io/library/nginx:1.27")
    assert await target.image_exists(f"{target.endpoint}/docker.io/library/nginx@{digest}")


async def test_a_tag_and_digest_reference_is_checked_by_its_digest(
    make: Make, moto: MotoServer
) -> None:
    target = make(prefix="mirror")
    await target.ensure_repository(REPO)
    digest = moto.put_image(REPO, "1.27")
    other = "sha256:" + "0" * 64
    assert await target.image_exists(f"{target.endpoint}/docker.io/library/nginx:9@{digest}")
    assert not await target.image_exists(f"{target.endpoint}/docker.io/library/nginx:1.27@{other}")


async def test_an_absent_tag_does_not_exist(make: Make, moto: MotoServer) -> None:
    target = make(prefix="mirror")
    await target.ensure_repository(REPO)
    moto.put_image(REPO, "1.27")
    assert not await target.image_exists(f"{target.endpoint}/docker.io/library/nginx:1.26")


async def test_an_image_of_a_repository_that_does_not_exist_does_not_exist(make: Make) -> None:
    target = make(prefix="mirror")
    assert not await target.image_exists(f"{target.endpoint}/docker.io/library/redis:7")


async def test_a_deleted_image_no_longer_exists(make: Make, moto: MotoServer) -> None:
    target = make(prefix="mirror")
    await target.ensure_repository(REPO)
    moto.put_image(REPO, "1.27")
    moto.client().batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "1.27"}])
    assert not await target.image_exists(f"{target.endpoint}/docker.io/library/nginx:1.27")


async def test_a_reference_without_tag_or_digest_is_checked_as_latest(
    make: Make, moto: MotoServer
) -> None:
    target = make(prefix="mirror")
    await target.ensure_repository(REPO)
    moto.put_image(REPO, "latest")
    assert await target.image_exists(f"{target.endpoint}/docker.io/library/nginx")


# -- credentials ----------------------------------------------------------------------------


async def test_pull_credentials_are_the_decoded_authorization_token(make: Make) -> None:
    credentials = await make().pull_credentials()
    assert (credentials.username, credentials.password) == ("AWS", f"{ACCOUNT}-auth-token")
    assert credentials.expires_at == dt.datetime.fromtimestamp(MOTO_TOKEN_EXPIRY, dt.UTC)


async def test_the_token_is_served_from_the_cache_until_half_its_lifetime_has_passed(
    make: Make, clock: Clock
) -> None:
    target = make()
    calls = CallLog(target.client)
    await target.pull_credentials()
    clock.advance(6 * 3600 - 1)
    await target.pull_credentials()
    assert calls["GetAuthorizationToken"] == 1


async def test_the_token_is_renewed_once_half_its_lifetime_has_passed(
    make: Make, clock: Clock
) -> None:
    target = make()
    calls = CallLog(target.client)
    await target.pull_credentials()
    clock.advance(6 * 3600)
    await target.pull_credentials()
    assert calls["GetAuthorizationToken"] == 2


async def test_concurrent_callers_share_one_token_renewal(make: Make, clock: Clock) -> None:
    target = make()
    calls = CallLog(target.client)
    first = await asyncio.gather(*(target.pull_credentials() for _ in range(25)))
    clock.advance(7 * 3600)
    renewed = await asyncio.gather(*(target.pull_credentials() for _ in range(25)))
    assert calls["GetAuthorizationToken"] == 2
    assert len(set(first)) == 1 and len(set(renewed)) == 1


async def test_a_token_already_expired_by_the_local_clock_is_given_ecrs_twelve_hours(
    make: Make, clock: Clock
) -> None:
    clock.now = MOTO_TOKEN_EXPIRY + 86_400  # moto's fixed expiry is in the past now
    credentials = await make().pull_credentials()
    assert credentials.expires_at == dt.datetime.fromtimestamp(clock.now + 12 * 3600, dt.UTC)


async def test_a_failed_renewal_serves_the_token_that_is_still_valid(
    make: Make, clock: Clock
) -> None:
    target = make()
    before = await target.pull_credentials()
    clock.advance(7 * 3600)
    with Stubber(target.client) as stub:
        stub.add_client_error("get_authorization_token", "ThrottlingException", "Rate exceeded")
        assert await target.pull_credentials() == before
        stub.assert_no_pending_responses()


async def test_after_a_failed_renewal_the_next_attempt_waits_a_minute(
    make: Make, clock: Clock
) -> None:
    target = make()
    await target.pull_credentials()
    clock.advance(7 * 3600)
    with Stubber(target.client) as stub:
        stub.add_client_error("get_authorization_token", "ThrottlingException", "Rate exceeded")
        await target.pull_credentials()
    calls = CallLog(target.client)
    clock.advance(59)
    await target.pull_credentials()
    assert calls["GetAuthorizationToken"] == 0
    clock.advance(1)
    await target.pull_credentials()
    assert calls["GetAuthorizationToken"] == 1


async def test_a_failed_renewal_of_an_expired_token_raises(make: Make, clock: Clock) -> None:
    target = make()
    await target.pull_credentials()
    clock.advance(12 * 3600)
    with Stubber(target.client) as stub:
        stub.add_client_error("get_authorization_token", "ThrottlingException", "Rate exceeded")
        with pytest.raises(RegistryError, match="GetAuthorizationToken failed: Throttling"):
            await target.pull_credentials()


# -- AWS credentials ------------------------------------------------------------------------


async def test_a_configured_role_is_assumed_through_sts(make: Make, moto: MotoServer) -> None:
    role = "arn:aws:iam::222222222222:role/swapper-mirror"
    target = make(accountId="222222222222", role=role)
    await target.ensure_repository(REPO)
    # the repository is in the role's account, not in the account of the environment's keys
    assert moto.client_as(role).describe_repositories(repositoryNames=[REPO])["repositories"]
    with pytest.raises(moto.client().exceptions.RepositoryNotFoundException):
        moto.client().describe_repositories(repositoryNames=[REPO])


async def test_irsa_web_identity_credentials_work_without_static_keys(
    make: Make, moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzd2FwcGVyIn0.c2lnbmF0dXJl")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::333333333333:role/swapper-irsa")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    target = make(accountId="333333333333")
    await target.ensure_repository(REPO)
    role = moto.client_as("arn:aws:iam::333333333333:role/other")
    assert role.describe_repositories(repositoryNames=[REPO])["repositories"]


async def test_no_credentials_at_all_surface_as_a_registry_error(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(RegistryError, match="no AWS credentials found"):
        await make().ensure_repository(REPO)


# -- errors moto cannot produce -------------------------------------------------------------


async def test_throttling_surfaces_as_a_registry_error(make: Make) -> None:
    target = make()
    with Stubber(target.client) as stub:
        stub.add_client_error("describe_images", "ThrottlingException", "Rate exceeded", 400)
        with pytest.raises(RegistryError, match="DescribeImages failed: ThrottlingException"):
            await target.image_exists(f"{target.endpoint}/docker.io/library/nginx:1")


async def test_access_denied_surfaces_as_a_registry_error_pointing_at_the_iam_policy(
    make: Make,
) -> None:
    target = make()
    with Stubber(target.client) as stub:
        stub.add_client_error("create_repository", "AccessDeniedException", "not authorized", 400)
        with pytest.raises(RegistryError, match=r"AccessDeniedException.*docs/ecr\.md"):
            await target.ensure_repository(REPO)


async def test_a_failed_ensure_is_not_remembered(make: Make, moto: MotoServer) -> None:
    target = make()
    with Stubber(target.client) as stub:
        stub.add_client_error("create_repository", "AccessDeniedException", "not authorized", 400)
        with pytest.raises(RegistryError):
            await target.ensure_repository(REPO)
    await target.ensure_repository(REPO)
    assert moto.client().describe_repositories(repositoryNames=[REPO])["repositories"]


async def test_a_policy_that_cannot_be_written_fails_the_ensure(make: Make) -> None:
    target = make(**policies())
    with Stubber(target.client) as stub:
        stub.add_response("create_repository", {"repository": {"repositoryName": REPO}})
        stub.add_client_error("set_repository_policy", "AccessDeniedException", "denied", 400)
        with pytest.raises(RegistryError, match="SetRepositoryPolicy failed"):
            await target.ensure_repository(REPO)


async def test_a_closed_target_refuses_calls(make: Make) -> None:
    target = make()
    await target.aclose()
    with pytest.raises(RegistryError, match="closed"):
        await target.pull_credentials()


# -- end to end: the token pushes an image -------------------------------------------------


def test_the_ecr_host_gets_chunked_uploads_and_keeps_its_mirror_hosts_settings() -> None:
    config = load_config(
        {
            "target": {
                "type": "aws",
                "aws": {"accountId": ACCOUNT, "region": REGION, "registryHost": "10.0.0.1:5000"},
            },
            "mirror": {"hosts": {"10.0.0.1:5000": {"insecure": True}}},
        }
    )
    host = registry_hosts(config)["10.0.0.1:5000"]
    assert (host.upload, host.plain_http) == ("chunked", True)


async def test_an_image_is_pushed_with_the_ecr_token_as_credentials(
    moto: MotoServer, tmp_path: Path, clock: Clock
) -> None:
    source = start_registry(tmp_path / "source")
    mirror = start_registry(tmp_path / "mirror", users={"AWS": f"{ACCOUNT}-auth-token"})
    proxy = await FaultProxy(mirror.host).start()  # logs the requests the engine makes
    client: RegistryClient | None = None
    target: TargetRegistry | None = None
    try:
        image = make_image([make_layer("e2e-a"), make_layer("e2e-b")])
        push_image(source, "team/app", image, "1.0")
        config = load_config(
            {
                "target": {
                    "type": "aws",
                    "aws": {
                        "accountId": ACCOUNT,
                        "region": REGION,
                        "endpointUrl": moto.url,
                        "registryHost": proxy.host,
                        "prefix": "mirror",
                    },
                },
                "mirror": {
                    "hosts": {source.host: {"insecure": True}, proxy.host: {"insecure": True}}
                },
            }
        )
        assert config.target.aws is not None
        target = ECRTarget(config.target.aws, clock=clock)
        client = RegistryClient(
            hosts=registry_hosts(config),
            credentials=target_credentials(config, target, static_credentials({})),
        )
        source_ref = parse(f"{source.host}/team/app:1.0")
        destination = target_reference(source_ref, target.endpoint)
        await target.ensure_repository(parse(destination).path)
        await CopyEngine(client).copy(source_ref, destination)

        assert get_manifest(mirror, parse(destination).path, "1.0") is not None
        assert any(entry.method == "PATCH" for entry in proxy.log)  # chunked, as ECR wants
        with mirror.client() as anonymous:
            anonymous.auth = None
            assert anonymous.get("/v2/").status_code == 401  # so the token did the pushing
    finally:
        if client is not None:
            await client.aclose()
        if target is not None:
            await target.aclose()
        await proxy.aclose()
        mirror.stop()
        source.stop()
