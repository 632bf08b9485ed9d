"""The transport seam: RegistryClient sends through the transport it is given, so a test can
inject faults at the request level (as httpx's ``MockTransport``) in front of the real HTTP
client and a real registry."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, Mapping

import pytest
from registries import FAST_RETRY, Registry, make_image, make_layer, plain_hosts, push_image

from swapper.errors import CopyError, ReadError
from swapper.oci import RegistryClient, Response, Transport


class Flaky:
    """Passes requests on to ``inner``, after failing the first ``failures`` of them (a
    connection that breaks while the answer is read), and records what was asked."""

    def __init__(self, inner: Transport, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.asked: list[tuple[str, str]] = []

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        follow_redirects: bool = False,
    ) -> Response:
        self.asked.append((method, url))
        if self.failures > 0:
            self.failures -= 1
            raise ReadError("injected: the connection broke")
        return await self.inner.send(
            method, url, headers=headers, content=content, follow_redirects=follow_redirects
        )

    def warm(self, url: str, count: int) -> None:
        self.inner.warm(url, count)

    async def aclose(self) -> None:
        await self.inner.aclose()


def flaky_client(registry: Registry, failures: int) -> tuple[RegistryClient, list[Flaky]]:
    made: list[Flaky] = []
    holder: dict[str, RegistryClient] = {}

    def transport(context: ssl.SSLContext) -> Transport:
        flaky = Flaky(holder["client"].http_transport(context), failures)
        made.append(flaky)
        return flaky

    client = RegistryClient(hosts=plain_hosts(registry), retry=FAST_RETRY, transport=transport)
    holder["client"] = client
    return client, made


async def test_requests_go_through_the_transport_given_and_its_faults_are_retried(
    source: Registry,
) -> None:
    image = make_image([make_layer("transport seam")])
    digest = push_image(source, "seam/app", image, "1.0")
    client, made = flaky_client(source, failures=2)
    async with client:
        found = await client.repository(f"{source.host}/seam/app").head_manifest("1.0")

    assert found is not None and found.digest == digest
    (flaky,) = made  # one transport for the one host
    assert len(flaky.asked) >= 3  # two injected failures, then the answer
    assert all(url.startswith(f"http://{source.host}/v2/") for _, url in flaky.asked)


async def test_a_transport_that_keeps_failing_ends_in_a_copy_error_naming_the_fault(
    source: Registry,
) -> None:
    push_image(source, "seam/down", make_image([make_layer("never read")]), "1.0")
    client, made = flaky_client(source, failures=1000)
    async with client:
        with pytest.raises(CopyError, match="injected"):
            await client.repository(f"{source.host}/seam/down").head_manifest("1.0")
    assert len(made[0].asked) == FAST_RETRY.attempts  # retried up to the policy, no more
