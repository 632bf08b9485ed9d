"""``swapper audit``: what admission would decide for the pods already in a cluster."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swapper.cli import _load_config, build_target

if TYPE_CHECKING:
    pass


def run(args: argparse.Namespace) -> int:
    from swapper import logs
    from swapper.controller.audit import (
        Audit,
        read_pods,
        registries_for,
        render_html,
        render_json,
        render_table,
    )
    from swapper.errors import ConfigError
    from swapper.kube import api_client

    config = _load_config(args.config)
    if not args.timeout > 0:
        raise ConfigError([("--timeout", "must be more than 0 seconds")], "command line")
    if args.cleanup and not config.cleanup.enabled:
        raise ConfigError([("cleanup.enabled", "--cleanup previews cleanup: turn it on")])
    logs.configure("error", "console")  # registry hiccups are in the report, not the log
    audit = Audit(config)
    client = api_client(args.kubeconfig, args.context)
    progress = None
    if sys.stderr.isatty():

        def progress(read: int) -> None:
            print(f"\rswapper: {read} pods read", end="", file=sys.stderr, flush=True)

    try:
        read_pods(audit, client, args.namespace, progress)
    finally:
        client.close()
        if progress is not None:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    refused = [namespace for namespace, _ in audit.forbidden]
    if len(refused) == 1:
        print(
            f"swapper: warning: may not list pods in namespace {refused[0]} (HTTP 403): "
            "left out of the report",
            file=sys.stderr,
        )
    elif refused:
        shown = ", ".join(refused[:5]) + (", ..." if len(refused) > 5 else "")
        print(
            f"swapper: warning: may not list pods in {len(refused)} namespaces ({shown}; HTTP "
            "403): left out of the report, which names them all",
            file=sys.stderr,
        )

    async def settle() -> Any:
        if not args.check_registries:
            return await audit.settle()
        registries, close = registries_for(config, build_target(config), args.timeout)
        try:
            return await audit.settle(registries)
        finally:
            await close()

    report = asyncio.run(settle())
    if args.cleanup:
        from swapper.controller.audit.cleanup import preview_cleanup

        used = report.mirror_references(config.target.endpoint)
        report.cleanup = asyncio.run(
            preview_cleanup(
                config,
                build_target(config),
                used,
                partial=bool(args.namespace or refused),
                request_timeout=args.timeout,
            )
        )
    render = {"table": render_table, "json": render_json, "html": render_html}[args.output]
    text = render(report)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
