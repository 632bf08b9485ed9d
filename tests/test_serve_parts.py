"""``build_server`` takes more parts: extra tasks, and a part built on its backends and
supervisor (the controller) that runs tasks and takes reloaded configs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI

from swapper import certs
from swapper.admission import server as server_module
from swapper.backends import Backends
from swapper.config import Config, load_config_file
from swapper.mirror.memory import MemoryCopyQueue
from swapper.reload import Subscribers
from swapper.serve import build_server
from swapper.supervisor import Supervisor, TaskSpec
from swapper.targets.memory import MemoryTarget

CONFIG: dict[str, Any] = {
    "imageSwapPolicy": "always",
    "imageCopyPolicy": "none",
    "source": {"checkAccess": False, "podPullSecrets": False},
    "target": {"type": "generic", "generic": {"registry": "mirror.local/m"}},
}


async def test_extra_tasks_and_a_part_run_under_the_supervisor_and_get_reloaded_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "tune_runtime", lambda: None)  # no gc.freeze in tests
    files = certs.write(certs.generate("swapper", "swapper", ["localhost"]), tmp_path / "tls")
    tls = {"tlsCertFile": str(files["tls.crt"]), "tlsKeyFile": str(files["tls.key"])}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **tls}), encoding="utf-8")
    ran: list[str] = []
    both_running = asyncio.Event()
    reloaded: asyncio.Queue[Config] = asyncio.Queue(maxsize=4)
    seen: dict[str, Any] = {}

    def task(name: str) -> TaskSpec:
        async def run() -> None:
            ran.append(name)
            if len(ran) == 2:
                both_running.set()
            await asyncio.Event().wait()

        return TaskSpec(name, run)

    def controller(
        backends: Backends, supervisor: Supervisor, on_config: Subscribers
    ) -> Sequence[TaskSpec]:
        seen.update(backends=backends, supervisor=supervisor)

        async def reconfigure(config: Config) -> None:
            reloaded.put_nowait(config)

        on_config.add(reconfigure)
        return [task("leader-election")]

    target = MemoryTarget("mirror.local/m")
    server = build_server(
        load_config_file(path),
        target,
        MemoryCopyQueue(target),
        config_path=str(path),
        config_interval=0.01,
        tasks=[task("extra")],
        extend=controller,
    )
    app = server.config.app
    assert isinstance(app, FastAPI)
    supervisor = seen["supervisor"]
    assert seen["backends"].target is target
    async with app.router.lifespan_context(app):
        async with asyncio.timeout(5):
            await both_running.wait()
        assert sorted(ran) == ["extra", "leader-election"]
        assert supervisor.names() == [
            "log-flusher",
            "certificate-reloader",
            "extra",
            "leader-election",
            "config-reload",
        ]
        path.write_text(yaml.safe_dump({**CONFIG, **tls, "dryRun": True}), encoding="utf-8")
        async with asyncio.timeout(5):
            assert (await reloaded.get()).dry_run is True
    assert supervisor.names() == []
