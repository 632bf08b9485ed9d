"""``swapper serve`` while source registries misbehave, and pods naming the mirror directly.

Real parts: a Debian ``docker-registry`` source with bearer-token auth (only ``public/`` is
anonymous), a plain-HTTP target registry, three broken sources on loopback (a TCP server that
accepts and never answers, a closed port, an HTTP server answering 503 to everything), and the
``swapper serve`` process over HTTPS with ``source.checkAccess`` on (its default) and a
``source.access.deadline`` of 1 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from helpers import make_pod, post_review, review_body
from registries import (
    Registry,
    TokenServer,
    hanging_server,
    make_image,
    make_layer,
    push_image,
    start_registry,
)
from webhook_process import Webhook, free_port, start_webhook, stop

from swapper.images import parse, target_reference

DEADLINE = 1.0


class _Unavailable(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *_: object) -> None:
        pass


@dataclass
class World:
    source: Registry
    target: Registry
    hanging: str  # host:port
    refused: str
    unavailable: str
    hook: Webhook

    def mirror_of(self, image: str) -> str:
        return target_reference(parse(image), f"{self.target.host}/mirror")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("outages")
    tokens = TokenServer(tmp / "tokens", users={"alice": "alice-secret"}, public=("public/",))
    tokens.start()
    source = start_registry(tmp / "source", token_server=tokens)
    target = start_registry(tmp / "target")
    image = make_image([make_layer("outages")])
    push_image(source, "public/app", image, "1.0")
    push_image(source, "private/app", image, "1.0")
    push_image(
        target, f"mirror/{parse(f'{source.host}/private/app:1.0').mirror_path()}", image, "1.0"
    )
    unavailable = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=unavailable.serve_forever, daemon=True).start()
    refused = f"127.0.0.1:{free_port()}"
    try:
        with hanging_server() as url:
            hanging = url.removeprefix("https://")
            broken = (hanging, refused, f"127.0.0.1:{unavailable.server_port}")
            config = tmp / "config.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "imageSwapPolicy": "always",
                        "imageCopyPolicy": "none",
                        "source": {"access": {"deadline": f"{DEADLINE}s"}},
                        "target": {
                            "type": "generic",
                            "generic": {"registry": f"{target.host}/mirror", "insecure": True},
                        },
                        "mirror": {
                            "hosts": {h: {"insecure": True} for h in (source.host, *broken)}
                        },
                    }
                )
            )
            hook = start_webhook(tmp, config)
            try:
                yield World(source, target, *broken, hook)
            finally:
                stop(hook)
    finally:
        unavailable.shutdown()
        unavailable.server_close()
        target.stop()
        source.stop()
        tokens.stop()


def review(images: list[str], secrets: tuple[str, ...] = ()) -> bytes:
    return review_body(make_pod(*images, namespace="team", secrets=secrets or None), "team")


def admit(world: World, body: bytes) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    response = post_review(world.hook, body)
    return response, time.monotonic() - started


def swapped(response: dict[str, Any]) -> dict[int, str]:
    return {
        int(op["path"].split("/")[3]): op["value"]
        for op in response.get("patch", [])
        if op["path"].endswith("/image")
    }


def skipped(response: dict[str, Any]) -> dict[str, str]:
    text = response.get("auditAnnotations", {}).get("skipped", "")
    return dict(item.split("=", 1) for item in text.split(",") if item)


def images(world: World) -> list[str]:
    return [
        f"{world.hanging}/team/hangs:1",
        f"{world.refused}/team/refused:1",
        f"{world.unavailable}/team/unavailable:1",
        f"{world.source.host}/public/app:1.0",
    ]


def test_broken_sources_cost_one_deadline_and_leave_the_public_container_swapped(
    world: World,
) -> None:
    response, took = admit(world, review(images(world)))
    assert took < DEADLINE + 1.5
    assert swapped(response) == {3: world.mirror_of(images(world)[3])}
    assert skipped(response) == {f"c{i}": "skipped-unverified" for i in range(3)}
    for i, image in enumerate(images(world)[:3]):
        [warning] = [w for w in response["warnings"] if w.startswith(f"containers[c{i}]")]
        assert warning.startswith(
            f"containers[c{i}]: not swapped: could not verify that {image} is readable "
            "(source unreachable: "
        )


def test_during_the_outage_later_pods_do_not_wait_again(world: World) -> None:
    admit(world, review(images(world)))
    response, took = admit(world, review(images(world)))
    assert took < 0.5
    assert skipped(response) == {f"c{i}": "skipped-unverified" for i in range(3)}


def test_an_image_that_is_not_there_is_called_private_or_not_there(world: World) -> None:
    image = f"{world.source.host}/public/never-pushed:1"
    response, _ = admit(world, review([image]))
    assert skipped(response) == {"c0": "skipped-private"}
    assert response["warnings"] == [
        f"containers[c0]: not swapped: {image} is not readable without credentials "
        "(private, or not there)"
    ]


def test_a_pod_naming_the_mirror_of_a_private_image_directly_is_denied(world: World) -> None:
    mirror = world.mirror_of(f"{world.source.host}/private/app:1.0")
    response, _ = admit(world, review([mirror], ("swapper-pull-secret",)))
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    assert mirror in message and f"{world.source.host}/private/app:1.0" in message
    assert "not readable without credentials" in message


def test_a_pod_naming_the_mirror_of_a_public_image_directly_is_allowed(world: World) -> None:
    mirror = world.mirror_of(f"{world.source.host}/public/app:1.0")
    response, _ = admit(world, review([mirror]))
    assert response["allowed"] is True
    assert "patch" not in response
    assert skipped(response) == {"c0": "skipped-origin"}


def test_a_pod_naming_the_mirror_of_an_unreachable_source_is_allowed_with_a_warning(
    world: World,
) -> None:
    mirror = world.mirror_of(f"{world.refused}/team/refused:1")
    response, _ = admit(world, review([mirror]))
    assert response["allowed"] is True
    assert skipped(response) == {"c0": "origin-unverified"}
    assert any("could not verify" in w for w in response["warnings"])
