"""The config file is watched: live keys are applied, a bad file is refused once, the rest is
reported as needing a restart."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from helpers import make_pod, make_review, review_body

from swapper import certs, logs
from swapper import reload as reload_module
from swapper.admission import server as server_module
from swapper.admission.app import AdmissionHandler
from swapper.backends import Backends
from swapper.config import Config, load_config, load_config_file
from swapper.metrics import Metrics
from swapper.mirror.memory import MemoryCopyQueue
from swapper.reload import ConfigReloader, Subscribers, changed_keys, is_live
from swapper.serve import build_server, set_log_level
from swapper.targets.memory import MemoryTarget

CONFIG: dict[str, Any] = {
    "imageSwapPolicy": "always",
    "imageCopyPolicy": "none",
    "source": {"checkAccess": False, "podPullSecrets": False},
    "target": {"type": "generic", "generic": {"registry": "mirror.local/m"}},
}
SKIP_TEAM = {"jmespath": "obj.metadata.namespace == 'team'"}


class Lines:
    """Stands in for the module's logger: the events logged, with their fields."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def record(event: str, **fields: Any) -> None:
            self.lines.append((event, fields))

        return record

    def of(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.lines if name == event]


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Lines:
    recorder = Lines()
    monkeypatch.setattr(reload_module, "log", recorder)
    return recorder


def with_changes(**changes: Any) -> dict[str, Any]:
    """CONFIG with some keys replaced; ``source`` merged."""
    data: dict[str, Any] = json.loads(json.dumps(CONFIG))
    source = changes.pop("source", {})
    data.update(changes)
    data["source"].update(source)
    return data


def write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


class Setup:
    """A handler over memory backends, serving the config in ``path``, and its reloader."""

    def __init__(self, path: Path, data: dict[str, Any], **overrides: Any) -> None:
        write(path, data)
        config = load_config_file(path).with_overrides(**overrides)
        target = MemoryTarget("mirror.local/m")
        self.metrics = Metrics()
        self.handler = AdmissionHandler(config, Backends(target, MemoryCopyQueue(target)))
        self.reloader = ConfigReloader(
            path, config, self.handler.reconfigure, self.metrics, overrides=overrides
        )

    async def swapped(self, namespace: str = "team") -> bool:
        answer = await self.handler(make_review(make_pod("nginx:1.27"), namespace=namespace))
        patch = answer["response"].get("patch")
        return patch is not None and any(
            op["path"] == "/spec/containers/0/image" for op in json.loads(base64.b64decode(patch))
        )

    def reloads(self, result: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            "swapper_config_reloads_total", {"result": result}
        )


async def test_a_filter_added_to_the_file_stops_the_swap_for_new_requests(
    tmp_path: Path, lines: Lines
) -> None:
    path = tmp_path / "config.yaml"
    setup = Setup(path, CONFIG)
    assert await setup.swapped()
    assert await setup.reloader.check() is None  # nothing changed yet
    write(path, with_changes(source={"filters": [SKIP_TEAM]}))
    assert await setup.reloader.check() == "applied"
    assert not await setup.swapped("team")
    assert await setup.swapped("web")
    assert lines.of("config_reloaded") == [{"path": str(path), "keys": ["source.filters"]}]
    assert setup.reloads("applied") == 1
    assert await setup.reloader.check() is None  # the same content is not applied twice


async def test_an_invalid_file_is_refused_once_and_the_old_config_keeps_serving(
    tmp_path: Path, lines: Lines
) -> None:
    path = tmp_path / "config.yaml"
    setup = Setup(path, CONFIG)
    write(path, with_changes(imageSwapPolicy="sometimes", source={"filters": [SKIP_TEAM]}))
    assert await setup.reloader.check() == "refused"
    [refused] = lines.of("config_reload_refused")
    assert refused["keys"] == ["imageSwapPolicy"]
    assert refused["problems"][0].startswith("imageSwapPolicy: ")
    assert "'always'" in refused["problems"][0]  # the problem says what is allowed
    assert setup.reloads("refused") == 1
    assert await setup.swapped()  # the filter of the refused file is not in force
    assert setup.handler.config.image_swap_policy == "always"
    assert await setup.reloader.check() is None
    assert await setup.reloader.check() is None
    assert len(lines.of("config_reload_refused")) == 1
    assert setup.reloads("refused") == 1
    write(path, with_changes(imageSwapPolicy="sometimes", dryRun="perhaps"))
    assert await setup.reloader.check() == "refused"  # another bad content: said again
    assert lines.of("config_reload_refused")[1]["keys"] == ["dryRun", "imageSwapPolicy"]


async def test_a_file_that_is_not_yaml_is_refused(tmp_path: Path, lines: Lines) -> None:
    path = tmp_path / "config.yaml"
    setup = Setup(path, CONFIG)
    path.write_text("target: [unclosed", encoding="utf-8")
    assert await setup.reloader.check() == "refused"
    assert lines.of("config_reload_refused")[0]["keys"] == ["(file)"]
    assert await setup.swapped()


async def test_a_key_that_needs_a_restart_is_reported_and_the_live_part_still_applied(
    tmp_path: Path, lines: Lines
) -> None:
    path = tmp_path / "config.yaml"
    setup = Setup(path, CONFIG)
    changed = with_changes(
        listenAddress="0.0.0.0:9443", mirror={"workers": 9}, source={"filters": [SKIP_TEAM]}
    )
    write(path, changed)
    assert await setup.reloader.check() == "restart-needed"
    assert lines.of("config_reload_needs_restart") == [
        {
            "path": str(path),
            "keys": ["listenAddress", "mirror.workers"],
            "applied": ["source.filters"],
        }
    ]
    assert setup.reloads("restart-needed") == 1
    assert setup.reloads("applied") is None
    assert not await setup.swapped("team")  # the filter is in force
    running = setup.handler.config
    assert running.listen_address == "0.0.0.0:8443"  # the old one, until a restart
    assert running.mirror.workers == 4
    assert running.source.filters == load_config(changed).source.filters


async def test_a_live_change_that_breaks_a_rule_with_the_old_keys_is_not_applied(
    tmp_path: Path, lines: Lines
) -> None:
    path = tmp_path / "config.yaml"
    setup = Setup(path, with_changes(source={"checkAccess": True}))
    # Valid on its own (no access check, so its deadline is free), but not with the old
    # checkAccess the running process keeps until a restart.
    write(path, with_changes(source={"checkAccess": False, "access": {"deadline": "9s"}}))
    assert await setup.reloader.check() == "restart-needed"
    [line] = lines.of("config_reload_needs_restart")
    assert line["keys"] == ["source.checkAccess"]
    assert line["applied"] == []
    assert line["not_applied"] == ["source.access.deadline"]
    assert "admissionTimeout" in line["problems"][0]
    assert setup.handler.config.source.access.deadline == 1.5


async def test_the_command_line_overrides_stay_over_a_reloaded_file(
    tmp_path: Path, lines: Lines
) -> None:
    path = tmp_path / "config.yaml"
    setup = Setup(path, CONFIG, dry_run=True)
    write(path, with_changes(dryRun=False, imageCopyPolicy="delayed"))
    assert await setup.reloader.check() == "applied"
    assert lines.of("config_reloaded")[0]["keys"] == ["imageCopyPolicy"]
    assert setup.handler.config.dry_run is True


def kubelet_update(folder: Path, data: dict[str, Any], generation: int) -> None:
    """What the kubelet does to a ConfigMap volume: the files in a new hidden folder, then the
    ``..data`` symlink swapped to it atomically; ``config.yaml`` links through ``..data``."""
    version = folder / f"..2026_12_04_{generation:02d}"
    version.mkdir()
    write(version / "config.yaml", data)
    os.symlink(version.name, folder / "..data_tmp")
    os.replace(folder / "..data_tmp", folder / "..data")
    if not (folder / "config.yaml").is_symlink():
        os.symlink("..data/config.yaml", folder / "config.yaml")


async def test_a_config_map_update_by_symlink_swap_is_seen(tmp_path: Path, lines: Lines) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    kubelet_update(folder, CONFIG, 1)
    path = folder / "config.yaml"
    target = MemoryTarget("mirror.local/m")
    config = load_config_file(path)
    handler = AdmissionHandler(config, Backends(target, MemoryCopyQueue(target)))
    reloader = ConfigReloader(path, config, handler.reconfigure, Metrics())
    before = path.lstat()
    kubelet_update(folder, with_changes(imageCopyPolicy="delayed"), 2)
    assert path.lstat().st_mtime_ns == before.st_mtime_ns  # the file's own link is untouched
    assert await reloader.check() == "applied"
    assert handler.config.image_copy_policy == "delayed"


def test_changed_keys_are_named_by_their_yaml_keys_and_lists_count_once() -> None:
    old = load_config(CONFIG)
    new = load_config(
        with_changes(
            imageCopyDeadline="5s",
            source={"filters": [SKIP_TEAM, {"jmespath": "`true`"}]},
            server={"maxContainers": 10},
        )
    )
    assert changed_keys(old, new) == ["imageCopyDeadline", "server.maxContainers", "source.filters"]
    assert changed_keys(old, load_config(CONFIG)) == []
    assert [is_live(k) for k in changed_keys(old, new)] == [True, False, True]


def test_a_changed_password_counts_though_it_is_redacted() -> None:
    def with_password(password: str) -> Config:
        options = {"domain": "private.local", "username": "u", "password": password}
        registry = {"type": "generic", "generic": {"genericOptions": options}}
        return load_config(with_changes(source={"registries": [registry]}))

    assert changed_keys(with_password("one"), with_password("two")) == ["source.registries"]
    assert changed_keys(with_password("one"), with_password("one")) == []


async def test_every_subscriber_gets_the_config_even_after_one_failed(lines: Lines) -> None:
    got: list[str] = []

    def failing(_: Config) -> None:
        raise RuntimeError("boom")

    async def later(config: Config) -> None:
        await asyncio.sleep(0)
        got.append(config.log_level)

    subscribers = Subscribers(failing)
    subscribers.add(later)
    await subscribers(load_config({**CONFIG, "logLevel": "debug"}))
    assert got == ["debug"]
    [failed] = lines.of("config_subscriber_failed")
    assert failed["error"] == "RuntimeError: boom"
    assert "failing" in failed["subscriber"]


async def test_the_server_built_for_serve_applies_a_changed_file_to_admission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "tune_runtime", lambda: None)  # no gc.freeze in tests
    files = certs.write(certs.generate("swapper", "swapper", ["localhost"]), tmp_path / "tls")
    tls = {"tlsCertFile": str(files["tls.crt"]), "tlsKeyFile": str(files["tls.key"])}
    path = tmp_path / "config.yaml"
    write(path, {**CONFIG, **tls})
    config = load_config_file(path).with_overrides(dry_run=False)
    target = MemoryTarget("mirror.local/m")
    server = build_server(  # not started: its app is driven in process
        config,
        target,
        MemoryCopyQueue(target),
        config_path=str(path),
        overrides={"dry_run": False},
        config_interval=0.01,
    )
    app = server.config.app
    assert isinstance(app, FastAPI)
    transport = httpx.ASGITransport(app=app)

    async def swaps() -> bool:
        body = review_body(make_pod("nginx:1.27"), namespace="team")
        answer = (await client.post("/mutate", content=body)).json()
        return "patch" in answer["response"]

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://swapper") as client,
    ):
        assert await swaps()
        write(path, {**with_changes(source={"filters": [SKIP_TEAM]}), **tls})
        async with asyncio.timeout(5):
            while await swaps():  # noqa: ASYNC110 - the reloader itself polls, every 10ms
                await asyncio.sleep(0.01)


async def test_a_reloaded_log_level_reaches_the_loggers_of_the_running_process() -> None:
    root = logging.getLogger()
    before = logging.getLevelName(root.level).lower()
    try:
        await Subscribers(set_log_level)(load_config({**CONFIG, "logLevel": "error"}))
        assert root.level == logging.ERROR
        await Subscribers(set_log_level)(load_config({**CONFIG, "logLevel": "debug"}))
        assert root.level == logging.DEBUG
    finally:
        logs.set_level(before)
