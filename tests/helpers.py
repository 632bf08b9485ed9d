"""Builders shared by the tests: pods and AdmissionReviews; the ``swapper`` command."""

from __future__ import annotations

import base64
import copy
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from swapper.admission.review import Operation, Review

if TYPE_CHECKING:
    from webhook_process import Webhook

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


def run_swapper(
    *args: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m swapper ARGS`` as a user runs it, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "swapper", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env=None if env is None else dict(env),
        cwd=cwd,
        check=False,
    )


def make_pod(
    *images: str,
    init: tuple[str, ...] = (),
    namespace: str | None = None,
    secrets: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": img} for i, img in enumerate(images)]
    }
    if init:
        spec["initContainers"] = [{"name": f"init{i}", "image": img} for i, img in enumerate(init)]
    if secrets is not None:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    metadata: dict[str, Any] = {"name": "web", "labels": {"app": "web"}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def make_review(
    pod: dict[str, Any],
    *,
    namespace: str = "default",
    operation: Operation | None = "CREATE",
    sub_resource: str = "",
    dry_run: bool = False,
    old: dict[str, Any] | None = None,
) -> Review:
    return Review(
        api_version="admission.k8s.io/v1",
        uid="uid-1",
        kind="Pod",
        resource="pods",
        sub_resource=sub_resource,
        operation=operation,
        namespace=namespace,
        name="web",
        dry_run=dry_run,
        object=copy.deepcopy(pod),
        old_object=old,
    )


def review_body(pod: dict[str, Any], namespace: str = "default") -> bytes:
    """An AdmissionReview v1 request (CREATE, a fresh uid) for ``pod``, as the API server
    sends it."""
    return orjson.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace,
                "operation": "CREATE",
                "object": pod,
            },
        }
    )


def post_review(hook: Webhook, body: bytes, timeout: float = 20) -> dict[str, Any]:
    """POST ``body`` to the webhook's ``/mutate``; its ``response``, the patch decoded."""
    with hook.client() as client:
        answer = client.post("/mutate", content=body, timeout=timeout)
    assert answer.status_code == 200, answer.text
    response: dict[str, Any] = answer.json()["response"]
    if "patch" in response:
        response["patch"] = orjson.loads(base64.b64decode(response["patch"]))
    return response


class Clock:
    """A clock the test moves by hand: pass it where the code takes ``clock=``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def eventually(what: str, check: Callable[[], Any], within: float = 30) -> Any:
    """Wait until ``check()`` is truthy (polled every 0.1 s) and return it; fail naming
    ``what`` after ``within`` seconds of the event loop's clock."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        found = check()
        if found:
            return found
        assert loop.time() < deadline, f"{what}: not within {within:g}s"
        await asyncio.sleep(0.1)
