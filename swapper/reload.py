"""Config reload: the config file is watched, and what can change live is applied live.

A mounted ConfigMap changes by a symlink swap (``..data``) that leaves no reliable file event,
so :class:`ConfigReloader` polls: it hashes the file's content and, when that changed, loads
and validates it (with the command line's overrides over it), as at start:

- invalid: one ``config_reload_refused`` line naming each key and its problem; the running
  config goes on. The same content is not reported again.
- only keys in :data:`LIVE_KEYS` changed: the new config is handed to the subscribers
  (``config_reloaded``).
- other keys changed too: ``config_reload_needs_restart`` names them; the running config takes
  the live keys of the new one (nothing else), so the process stays consistent.

:class:`Subscribers` fans an applied config out to everything that takes one.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from swapper.config import REDACTED, Config, load_config, load_config_file
from swapper.errors import ConfigError
from swapper.logs import get_logger
from swapper.metrics import Metrics

log = get_logger("swapper.reload")

Apply = Callable[[Config], Awaitable[None] | None]

LIVE_KEYS: dict[str, tuple[str, ...]] = {
    "dryRun": ("dry_run",),
    "logLevel": ("log_level",),
    "imageSwapPolicy": ("image_swap_policy",),
    "imageCopyPolicy": ("image_copy_policy",),
    "imageCopyDeadline": ("image_copy_deadline",),
    "admissionTimeout": ("admission_timeout",),
    "source.filters": ("source", "filters"),
    "source.access.mirrorReferences": ("source", "access", "mirror_references"),
    "source.access.deadline": ("source", "access", "deadline"),
    "controller.backfill": ("controller", "backfill"),
    "controller.prefill": ("controller", "prefill"),
    "controller.heal": ("controller", "heal"),
    "controller.monitor": ("controller", "monitor"),
}
"""The keys a reload applies without a restart (YAML key: the attribute path in Config)."""

MAX_CONFIG_BYTES = 4 * 1024**2
"""A config file larger than this is not read (a ConfigMap holds at most 1 MiB)."""


def _flat(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, leaf value)`` of a dumped config; list items as ``key[i]``."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flat(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _flat(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def _named(key: str) -> str:
    """The key a change is reported under: a list's own key, not its items'."""
    return key.split("[", 1)[0]


def changed_keys(old: Config, new: Config) -> list[str]:
    """The YAML keys (dotted) whose effective values differ, sorted; a list counts as one key.

    Compared on :meth:`~swapper.config.Config.effective`, with the values it redacts
    (passwords) compared on the full configs."""
    old_effective, new_effective = dict(_flat(old.effective())), dict(_flat(new.effective()))
    missing = object()
    changed = {
        _named(key)
        for key in old_effective.keys() | new_effective.keys()
        if old_effective.get(key, missing) != new_effective.get(key, missing)
    }
    old_full = dict(_flat(old.model_dump(by_alias=True, mode="json")))
    new_full = dict(_flat(new.model_dump(by_alias=True, mode="json")))
    for key in old_full.keys() | new_full.keys():
        hidden = REDACTED in (old_effective.get(key), new_effective.get(key))
        if hidden and old_full.get(key, missing) != new_full.get(key, missing):
            changed.add(_named(key))
    return sorted(changed)


def is_live(key: str) -> bool:
    """Whether a change of ``key`` (as :func:`changed_keys` names it) applies without restart."""
    return any(key == live or key.startswith(f"{live}.") for live in LIVE_KEYS)


def _replaced(model: BaseModel, path: tuple[str, ...], value: Any) -> Any:
    first, *rest = path
    item = value if not rest else _replaced(getattr(model, first), tuple(rest), value)
    return model.model_copy(update={first: item})


def live_part(old: Config, new: Config) -> Config:
    """``old`` with the :data:`LIVE_KEYS` of ``new``. Raises :class:`ConfigError` when the
    mix breaks a rule between keys (e.g. a deadline no longer inside ``admissionTimeout``)."""
    mixed = old
    for path in LIVE_KEYS.values():
        value = new
        for name in path:
            value = getattr(value, name)
        mixed = _replaced(mixed, path, value)
    load_config(mixed.model_dump(by_alias=True, mode="json"), "the live keys over the old config")
    return mixed


def _digest(path: Path) -> str:
    """The content's hash (the symlinks followed); for a file that cannot be read, its error."""
    try:
        with path.open("rb") as file:
            return hashlib.sha256(file.read(MAX_CONFIG_BYTES + 1)).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


def _load(path: Path) -> tuple[str, Config | ConfigError] | None:
    """The content's hash and what it validates to; None when it changed while being read."""
    before = _digest(path)
    result: Config | ConfigError
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError([("(file)", f"larger than {MAX_CONFIG_BYTES} bytes")], str(path))
        result = load_config_file(path)
    except OSError as exc:
        result = ConfigError([("(file)", f"cannot read {path}: {exc.strerror}")], str(path))
    except ConfigError as exc:
        result = exc
    return (before, result) if _digest(path) == before else None


async def _call(apply: Apply, config: Config) -> None:
    result = apply(config)
    if inspect.isawaitable(result):
        await result


class ConfigReloader:
    """Polls the config file every ``interval`` seconds (see the module docstring).

    ``current`` is the config the process runs with (``overrides`` already applied), read from
    ``path``; ``overrides`` are the command line's (field names: ``dry_run``, ...), put over
    every reloaded config too.
    """

    def __init__(
        self,
        path: str | Path,
        current: Config,
        apply: Apply,
        metrics: Metrics,
        interval: float = 2.0,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.current = current
        self.apply = apply
        self.metrics = metrics
        self.interval = interval
        self.overrides = dict(overrides or {})
        self._digest = _digest(self.path)  # the content ``current`` was read from

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    async def check(self) -> str | None:
        """One poll. Returns what came of a new content (``applied``, ``refused``,
        ``restart-needed``, or ``unchanged`` when no key changed); None for no new content."""
        if await asyncio.to_thread(_digest, self.path) == self._digest:
            return None
        loaded = await asyncio.to_thread(_load, self.path)
        if loaded is None:  # changed again while read: the next poll reads it whole
            return None
        self._digest, result = loaded
        if isinstance(result, ConfigError):
            self._refused(result.problems)
            return "refused"
        new = result.with_overrides(**self.overrides)
        changed = changed_keys(self.current, new)
        if not changed:
            log.info("config_file_changed", path=str(self.path), changed=[])
            return "unchanged"
        live = [key for key in changed if is_live(key)]
        fixed = [key for key in changed if not is_live(key)]
        if not fixed:
            self.current = new
            await _call(self.apply, new)
            self.metrics.config_reloads.labels("applied").inc()
            log.info("config_reloaded", path=str(self.path), keys=live)
            return "applied"
        applied: list[str] = []
        problems: list[str] = []
        if live:
            try:
                mixed = live_part(self.current, new)
            except ConfigError as exc:
                problems = [f"{key}: {message}" for key, message in exc.problems]
            else:
                self.current = mixed
                await _call(self.apply, mixed)
                applied = live
        self.metrics.config_reloads.labels("restart-needed").inc()
        log.warning(
            "config_reload_needs_restart",
            path=str(self.path),
            keys=fixed,
            applied=applied,
            **({"not_applied": live, "problems": problems} if problems else {}),
        )
        return "restart-needed"

    def _refused(self, problems: list[tuple[str, str]]) -> None:
        self.metrics.config_reloads.labels("refused").inc()
        log.warning(
            "config_reload_refused",
            path=str(self.path),
            keys=[key for key, _ in problems],
            problems=[f"{key}: {message}" for key, message in problems],
        )


class Subscribers:
    """Hands an applied config to each subscriber in turn (each within ``timeout`` seconds);
    one that fails is logged and the others still get it."""

    def __init__(self, *subscribers: Apply, timeout: float = 30.0) -> None:
        self._subscribers = list(subscribers)
        self.timeout = timeout

    def add(self, subscriber: Apply) -> None:
        """Add one (at start-up: the list is as long as the parts that take a config)."""
        self._subscribers.append(subscriber)

    async def __call__(self, config: Config) -> None:
        for subscriber in self._subscribers:
            try:
                async with asyncio.timeout(self.timeout):
                    await _call(subscriber, config)
            except Exception as exc:
                log.error(
                    "config_subscriber_failed",
                    subscriber=getattr(subscriber, "__qualname__", repr(subscriber)),
                    error=f"{type(exc).__name__}: {exc}",
                )
