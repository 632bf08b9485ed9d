"""``swapper serve``: the admission webhook (and the cluster half, when on) over HTTPS."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from swapper.cli import _load_config, build_target

if TYPE_CHECKING:
    pass


def run(args: argparse.Namespace) -> int:
    from swapper import logs

    config = _load_config(args.config)
    overrides: dict[str, Any] = {}
    if args.dry_run:
        overrides["dry_run"] = True
    if args.listen_address:
        overrides["listen_address"] = args.listen_address
    if args.tls_cert_file:
        overrides["tls_cert_file"] = args.tls_cert_file
    if args.tls_key_file:
        overrides["tls_key_file"] = args.tls_key_file
    options = {name: "--" + name.replace("_", "-") for name in overrides}
    config = config.with_overrides(options, **overrides)
    if not config.tls_cert_file or not config.tls_key_file:
        from swapper.errors import ConfigError

        raise ConfigError([("tlsCertFile", "--tls-cert-file and --tls-key-file are required")])
    logs.configure(config.log_level, config.log_format)
    target = build_target(config)

    from swapper.serve import serve

    serve(config, target, args.cert_reload_interval, config_path=args.config, overrides=overrides)
    return 0
