"""moto in server mode on loopback, standing in for the ECR and STS APIs.

:class:`MotoServer` runs moto's :class:`~moto.server.ThreadedMotoServer` on ``127.0.0.1`` and a
free port; swapper reaches it through ``target.aws.endpointUrl`` (ECR) and the standard
``AWS_ENDPOINT_URL_STS`` setting (STS). :func:`aws_environment` gives the process dummy
credentials and keeps the machine's own AWS configuration (profiles, instance metadata) out.
:class:`CallLog` counts the API operations a boto3 client sends, with botocore's event hooks.
moto 5 answers ``DescribeRepositories`` and ``DescribeImages`` in one page whatever
``maxResults`` says, and ignores ``DescribeImages``' ``tagStatus`` filter;
:func:`page_like_aws` teaches its ECR responses both (as AWS does), so paging is tested.
Used by ``tests/targets/test_ecr.py``, the target contract test and ``benchmarks/ecr_calls.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx
from moto.core.responses import ActionResult
from moto.ecr.responses import ECRResponse
from moto.server import ThreadedMotoServer
from webhook_process import free_port

ACCOUNT = "123456789012"  # moto's account for any unknown access key
REGION = "eu-west-1"

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}
UNSET = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ECR",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


def _page(response: ECRResponse, result: ActionResult, key: str) -> ActionResult:
    """``result`` cut to the page ``maxResults``/``nextToken`` ask for (an offset token)."""
    answer = dict(result.result)  # type: ignore[call-overload]
    items = list(answer[key])
    if key == "imageDetails":
        status = (response._get_param("filter") or {}).get("tagStatus", "ANY")
        if status != "ANY":
            items = [
                i for i in items if bool(getattr(i, "image_tags", None)) == (status == "TAGGED")
            ]
    start = int(response._get_param("nextToken") or 0)
    size = int(response._get_param("maxResults") or 1000)
    answer[key] = items[start : start + size]
    if start + size < len(items):
        answer["nextToken"] = str(start + size)
    return ActionResult(answer)


def page_like_aws() -> None:
    """Make moto's ECR ``DescribeRepositories`` and ``DescribeImages`` page (``maxResults``,
    ``nextToken``) and filter by ``tagStatus`` as AWS does. Idempotent; moto is in-process."""
    if getattr(ECRResponse, "_swapper_pages", False):
        return
    describe_repositories = ECRResponse.describe_repositories
    describe_images = ECRResponse.describe_images

    def repositories(self: ECRResponse) -> ActionResult:
        return _page(self, describe_repositories(self), "repositories")

    def images(self: ECRResponse) -> ActionResult:
        if self._get_param("imageIds"):
            return describe_images(self)
        return _page(self, describe_images(self), "imageDetails")

    ECRResponse.describe_repositories = repositories  # type: ignore[method-assign]
    ECRResponse.describe_images = images  # type: ignore[method-assign]
    ECRResponse._swapper_pages = True  # type: ignore[attr-defined]


TOKEN_HOURS = 12  # how long ECR's authorization tokens last


def tokens_expire_like_aws() -> None:
    """Make moto's ECR ``GetAuthorizationToken`` say its tokens expire in 12 hours, as AWS's
    do, rather than on 2015-01-01. A client that renews shortly before ``expiresAt`` (as
    k8s-image-swapper does) would otherwise ask for a new token every second for as long as
    it runs. Idempotent; moto is in-process (the benchmark's moto_proxy calls it too)."""
    if getattr(ECRResponse, "_swapper_token_hours", None):
        return
    get_authorization_token = ECRResponse.get_authorization_token

    def token(self: ECRResponse) -> ActionResult:
        answer = dict(get_authorization_token(self).result)  # type: ignore[call-overload]
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=TOKEN_HOURS)
        answer["authorizationData"] = [
            {**data, "expiresAt": expires} for data in answer["authorizationData"]
        ]
        return ActionResult(answer)

    ECRResponse.get_authorization_token = token  # type: ignore[method-assign]
    ECRResponse._swapper_token_hours = TOKEN_HOURS  # type: ignore[attr-defined]


class MotoServer:
    def __init__(self) -> None:
        page_like_aws()
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every repository, image and policy (moto's state is per process)."""
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def environment(self) -> dict[str, str]:
        return {**ENV, "AWS_ENDPOINT_URL_STS": self.url}

    def client(self, service: str = "ecr", region: str = REGION, **credentials: str) -> Any:
        """A boto3 client for the test's own checks (not swapper's)."""
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id=credentials.get("access_key", "testing"),
            aws_secret_access_key=credentials.get("secret_key", "testing"),
            aws_session_token=credentials.get("token"),
        )

    def client_as(self, role_arn: str, service: str = "ecr") -> Any:
        """A client with the credentials of ``role_arn`` (assumed by the test itself)."""
        found = self.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="test")
        creds = found["Credentials"]
        return self.client(
            service,
            access_key=creds["AccessKeyId"],
            secret_key=creds["SecretAccessKey"],
            token=creds["SessionToken"],
        )

    def put_image(self, repository: str, tag: str, seed: str = "x") -> str:
        """Put a (small, valid-looking) image manifest into ``repository``; its digest."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 2,
                "digest": "sha256:" + "c" * 64,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 10,
                    "digest": "sha256:" + (seed.encode().hex() * 64)[:64],
                }
            ],
        }
        answer = self.client().put_image(
            repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag
        )
        return str(answer["image"]["imageId"]["imageDigest"])


@contextmanager
def running_moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


class CallLog:
    """Counts the API operations a botocore client sends (every attempt, retries included)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-send", self._sent)

    def _sent(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        if isinstance(target, bytes):
            target = target.decode()
        operation = target.rpartition(".")[2] or "unknown"
        with self._lock:
            self.calls[operation] += 1

    def __getitem__(self, operation: str) -> int:
        return self.calls[operation]

    @property
    def total(self) -> int:
        return sum(self.calls.values())
