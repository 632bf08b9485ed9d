"""``swapper certs``: the webhook's certificate tooling."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


def run(args: argparse.Namespace) -> int:
    if args.certs_command == "bootstrap":
        return _certs_bootstrap(args)
    from swapper import certs

    ca = None
    if args.ca_cert or args.ca_key:
        if not (args.ca_cert and args.ca_key):
            print("swapper: --ca-cert and --ca-key go together", file=sys.stderr)
            return 2
        ca = (Path(args.ca_cert).read_bytes(), Path(args.ca_key).read_bytes())
    out = Path(args.out)
    if ca is None and not args.force and (out / "ca.crt").exists() and (out / "ca.key").exists():
        # A new CA would break every caBundle made from this one: sign with it instead.
        ca = ((out / "ca.crt").read_bytes(), (out / "ca.key").read_bytes())
        print(f"reusing the CA in {out} (--force makes a new one)", file=sys.stderr)
    generated = certs.generate(args.service, args.namespace, args.san, args.days, ca=ca)
    paths = certs.write(generated, out)
    for name, path in sorted(paths.items()):
        print(f"{name}: {path}")
    return 0


def _certs_bootstrap(args: argparse.Namespace) -> int:
    from swapper.kube import api_client
    from swapper.kube.webhook_certs import BootstrapRequest, bootstrap, parse_labels

    request = BootstrapRequest(
        namespace=args.namespace,
        service=args.service,
        secret=args.secret,
        webhook=args.webhook,
        extra_sans=tuple(args.san),
        days=args.days,
        renew_before_days=args.renew_before_days,
        labels=parse_labels(args.label),
    )
    client = api_client(args.kubeconfig)
    try:
        result = bootstrap(client, request)
    finally:
        client.close()
    for line in result.lines(request):
        print(line)
    return 0
