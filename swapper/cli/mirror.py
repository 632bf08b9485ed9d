"""``swapper mirror``: one copy from the command line (:mod:`swapper.mirror.command`).

Only what a copy needs is imported: no pydantic unless ``--config``, no kubernetes, no web
stack (tests/mirror/test_mirror_command.py holds it to that).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from swapper.cli import _load_config, build_target

if TYPE_CHECKING:
    import ssl
    import threading

    from swapper.config import Config
    from swapper.images import ImageReference


def run(args: argparse.Namespace) -> int:
    # Only what a copy needs is imported: no pydantic (unless --config), kubernetes or fastapi.
    # Meanwhile a thread builds the TLS context as swapper.oci.tls_context(ca_file=...) would
    # (the system's CAs looked up lazily where it can: swapper.oci._trust), mostly outside the
    # GIL. (ssl and threading are already imported, by asyncio: the thread imports only that
    # small module.)
    import gc
    import threading

    # A one-off copy makes little cyclic garbage: no collections while importing; afterwards
    # only the objects made since are ever looked at (gc.freeze below).
    gc.disable()
    built: list[ssl.SSLContext | BaseException] = []

    def build_tls_context() -> None:
        try:
            from swapper.oci._trust import client_context

            built.append(client_context(args.ca_file))
        except Exception as exc:
            # OSError and ssl.SSLError for a bad --ca-file; an ImportError only when the main
            # thread was interrupted (Ctrl-C) in the middle of the same imports.
            built.append(exc)

    tls_thread = threading.Thread(target=build_tls_context, daemon=True)
    tls_thread.start()
    try:
        return _mirror_copy(args, tls_thread, built)
    finally:
        # Never exit while the thread is inside OpenSSL: interpreter shutdown under a running
        # daemon thread can crash the process.
        tls_thread.join()
        gc.enable()


def _mirror_copy(
    args: argparse.Namespace,
    tls_thread: threading.Thread,
    built: list[ssl.SSLContext | BaseException],
) -> int:
    import gc

    from swapper.errors import ConfigError, CopyError
    from swapper.images import parse
    from swapper.mirror.command import run_mirror, summary
    from swapper.oci import (
        DEFAULT_BLOB_IDLE_TIMEOUT,
        HostConfig,
        ReferrerSettings,
        parse_platforms,
    )

    source = parse(args.source)
    hosts: dict[str, HostConfig] = {}
    config = None
    if args.config:
        config = _load_config(args.config)
    if args.target:
        target = parse(args.target)
    elif config is not None:
        from swapper.images import target_reference

        target = parse(target_reference(source, config.target.endpoint))
    else:
        raise ConfigError([("TARGET", "give a TARGET reference, or --config to derive it")])
    registry = None
    if config is not None:  # the configured target: its hosts, repository and push token
        from swapper.targets.factory import registry_hosts

        hosts.update(registry_hosts(config))
        registry = build_target(config)
    try:
        platforms = parse_platforms(",".join(args.platform) or None) or ()
    except ValueError as exc:
        raise ConfigError([("--platform", str(exc))]) from None
    referrers: ReferrerSettings | None = ReferrerSettings()
    if config is not None:
        from swapper.wiring import referrer_settings

        referrers = referrer_settings(config)
    if args.referrer_type:
        bad = [t for t in args.referrer_type if t.count("/") != 1 or not all(t.split("/"))]
        if bad:
            raise ConfigError(
                [("--referrer-type", f"{bad[0]!r} is not a media type (type/subtype)")]
            )
        referrers = ReferrerSettings(types=tuple(args.referrer_type))
    if args.no_referrers:
        referrers = None
    insecure = [h.strip().lower() for arg in args.insecure for h in arg.split(",") if h.strip()]
    for host in insecure:
        hosts[host] = HostConfig(plain_http=True)
    tls_thread.join()
    if isinstance(built[0], BaseException):
        raise ConfigError([("--ca-file", f"{args.ca_file}: {built[0]}")])
    for host in (source.domain, target.domain):
        if host not in hosts:
            hosts[host] = HostConfig(ca_file=args.ca_file, ssl_context=built[0])
    copy = run_mirror(
        source,
        target,
        platforms=platforms,
        authfile=args.authfile,
        hosts=hosts,
        target_registry=registry,
        verify=config.mirror.verify if config is not None else (),
        blob_idle_timeout=(
            config.mirror.blob_idle_timeout if config is not None else DEFAULT_BLOB_IDLE_TIMEOUT
        ),
        mark_as=_mark_as(config, registry, target),
        referrers=referrers,
    )
    gc.freeze()
    gc.enable()
    try:
        try:
            import uvloop  # TLS and sockets in C: less CPU per byte copied
        except ImportError:
            import asyncio

            result = asyncio.run(copy)
        else:
            result = uvloop.run(copy)
    except CopyError as exc:
        print(f"swapper: copy failed ({exc.reason}): {exc}", file=sys.stderr)
        hint = _plain_http_hint(exc, [source.domain, target.domain], insecure)
        if hint:
            print(f"swapper: {hint}", file=sys.stderr)
        return 1
    print(summary(result))
    return 0


def _mark_as(config: Config | None, registry: object, target: ImageReference) -> str:
    """The cluster whose usage mark ``swapper mirror`` writes: ``clusterName`` when the
    ``--config`` turns cleanup on and the copy goes into its target, under its endpoint."""
    from swapper.images import is_at_endpoint

    if config is None or registry is None or not config.cleanup.enabled:
        return ""
    return config.cluster_name if is_at_endpoint(target, config.target.endpoint) else ""


def _plain_http_hint(exc: Exception, domains: list[str], insecure: list[str]) -> str:
    """For a TLS failure against a registry that may speak plain HTTP: the flag to pass."""
    text = str(exc)
    if getattr(exc, "reason", "") != "tls" and not any(
        marker in text for marker in ("SSL", "TLS", "WRONG_VERSION_NUMBER", "record layer")
    ):
        return ""
    named = [d for d in domains if d in text and d.lower() not in insecure]
    candidates = named or [d for d in dict.fromkeys(domains) if d.lower() not in insecure]
    if not candidates:
        return ""
    flags = " ".join(f"--insecure {d}" for d in candidates)
    return f"if {' or '.join(candidates)} is a plain-HTTP registry, add {flags}"
