"""An unexpected error in the endpoint is never a 500: allowed and unchanged, or a 400."""

from __future__ import annotations

from typing import Any, NoReturn

import httpx
import pytest
from helpers import FIXTURES

from swapper.admission import app as app_module
from swapper.admission.app import AdmissionHandler, create_app
from swapper.backends import Backends
from swapper.config import load_config
from swapper.mirror.memory import MemoryCopyQueue
from swapper.targets.memory import MemoryTarget

REQUEST = (FIXTURES / "admission" / "three-containers.request.json").read_bytes()
CONFIG = {
    "imageSwapPolicy": "always",
    "imageCopyPolicy": "none",
    "source": {"checkAccess": False},
    "target": {"type": "generic", "generic": {"registry": "mirror.local/m"}},
}


def boom(*_: Any) -> NoReturn:
    raise RuntimeError("unexpected")


async def post(body: bytes) -> httpx.Response:
    target = MemoryTarget("mirror.local/m")
    app = create_app(load_config(CONFIG), Backends(target, MemoryCopyQueue(target)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://swapper") as client:
        return await client.post("/mutate", content=body)


async def test_an_unexpected_error_after_parsing_is_answered_allowed_and_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def failing(*_: Any) -> NoReturn:
        boom()

    monkeypatch.setattr(AdmissionHandler, "__call__", failing)
    answer = await post(REQUEST)
    assert answer.status_code == 200
    assert answer.json()["response"] == {
        "uid": "a1",
        "allowed": True,
        "warnings": ["swapper: pod left unchanged (internal: RuntimeError)"],
    }


async def test_an_unexpected_error_before_the_uid_is_known_is_answered_400(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "parse_review", boom)
    answer = await post(REQUEST)
    assert answer.status_code == 400
    assert answer.json() == {"error": "the request could not be read (RuntimeError)"}
