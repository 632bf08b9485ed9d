"""The command line: ``swapper serve | check-config | explain | mirror | certs``.

Heavy modules are imported inside each command, so a command loads only what it uses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swapper.errors import SwapperError

if TYPE_CHECKING:
    import ssl
    import threading

    from swapper.config import Config
    from swapper.targets.base import TargetRegistry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swapper",
        description="Kubernetes admission webhook that mirrors pod images to your own registry.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the admission webhook over HTTPS")
    serve.add_argument("--config", required=True, metavar="FILE", help="YAML config file")
    serve.add_argument("--tls-cert-file", metavar="F", help="PEM certificate (overrides config)")
    serve.add_argument("--tls-key-file", metavar="F", help="PEM private key (overrides config)")
    serve.add_argument("--listen-address", metavar="HOST:PORT", help="default 0.0.0.0:8443")
    serve.add_argument("--dry-run", action="store_true", help="audit mode: report, change nothing")
    serve.add_argument(
        "--cert-reload-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how often the certificate files are checked for rotation (default 10)",
    )

    check = sub.add_parser(
        "check-config", help="validate a config file, print the effective config"
    )
    check.add_argument("file", metavar="FILE")

    explain = sub.add_parser(
        "explain", help="print the decision for each image or pod container, contacting nothing"
    )
    explain.add_argument("--config", required=True, metavar="FILE")
    explain.add_argument("--namespace", default="default", help="namespace for filters")
    explain.add_argument("-f", "--pod", metavar="POD.yaml", help="a pod manifest (YAML or JSON)")
    explain.add_argument("images", nargs="*", metavar="IMAGE")

    mirror = sub.add_parser(
        "mirror", help="copy one image now, with the engine admission uses (progress on stderr)"
    )
    mirror.add_argument("source", metavar="SOURCE", help="image to copy, e.g. nginx:1.27")
    mirror.add_argument(
        "target",
        metavar="TARGET",
        nargs="?",
        help="where to copy it; default: its mirror name under the --config target",
    )
    mirror.add_argument("--config", metavar="FILE", help="config whose target names the mirror")
    mirror.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH[/VARIANT]",
        help="copy only these platforms of an index (repeat, or comma-separated; default all)",
    )
    mirror.add_argument(
        "--authfile", metavar="FILE", help='docker config.json with registry credentials ("auths")'
    )
    mirror.add_argument(
        "--insecure",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="speak plain HTTP to this registry (repeat)",
    )
    mirror.add_argument("--ca-file", metavar="PEM", help="extra CA bundle for HTTPS registries")

    certs = sub.add_parser("certs", help="certificate tooling")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True, metavar="COMMAND")
    gen = certs_sub.add_parser("generate", help="a CA and a serving certificate for the webhook")
    gen.add_argument("--service", default="swapper")
    gen.add_argument("--namespace", default="swapper")
    gen.add_argument("--san", action="append", default=[], help="extra DNS name or IP (repeat)")
    gen.add_argument("--days", type=int, default=365)
    gen.add_argument("--out", default="certs/dev", help="output folder (default certs/dev)")
    gen.add_argument("--ca-cert", help="reuse this CA certificate (renewal keeps the caBundle)")
    gen.add_argument("--ca-key", help="the key of --ca-cert")
    boot = certs_sub.add_parser(
        "bootstrap",
        help="create or renew the webhook's TLS Secret in the cluster and set the caBundle "
        "(what the Helm chart's certificate Job runs)",
    )
    boot.add_argument("--namespace", required=True, help="namespace of the Service and Secret")
    boot.add_argument("--service", required=True, help="the webhook's Service")
    boot.add_argument("--secret", required=True, help="the kubernetes.io/tls Secret to keep")
    boot.add_argument(
        "--webhook", default="", help="MutatingWebhookConfiguration whose caBundle to set"
    )
    boot.add_argument("--san", action="append", default=[], help="extra DNS name or IP (repeat)")
    boot.add_argument("--days", type=int, default=365, help="serving certificate validity")
    boot.add_argument(
        "--renew-before-days",
        type=int,
        default=30,
        help="re-issue the serving certificate when it expires within this many days",
    )
    boot.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="label on the Secret"
    )
    boot.add_argument(
        "--kubeconfig", help="default: the pod's service account in a cluster, else $KUBECONFIG"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return _run(_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check-config":
            return _check_config(args)
        if args.command == "explain":
            return _explain(args)
        if args.command == "mirror":
            return _mirror(args)
        return _certs(args)
    except SwapperError as exc:
        print(f"swapper: {exc}", file=sys.stderr)
        return 2


def console() -> None:
    """The ``swapper`` command: :func:`main`, then exit.

    ``swapper mirror`` leaves without tearing the interpreter down: once its copy is done and
    its output written, nothing is left to clean up (connections closed, the TLS thread
    joined), and unloading every module would keep its user waiting about 25 ms more.
    """
    args = _parser().parse_args()
    code = _run(args)
    if args.command == "mirror":
        import contextlib
        import os

        logs = sys.modules.get("swapper.logs")  # if the copy imported it
        if logs is not None:
            logs.flush()
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _mirror(args: argparse.Namespace) -> int:
    # Only what a copy needs is imported: no pydantic (unless --config), kubernetes or fastapi.
    # Meanwhile a thread builds the TLS context as swapper.oci.tls_context(ca_file=...) would:
    # loading the system's CAs takes about 20 ms, outside the GIL. (ssl and threading are
    # already imported, by asyncio: the thread imports nothing.)
    import gc
    import ssl
    import threading

    # A one-off copy makes little cyclic garbage: no collections while importing; afterwards
    # only the objects made since are ever looked at (gc.freeze below).
    gc.disable()
    built: list[ssl.SSLContext | BaseException] = []

    def build_tls_context() -> None:
        try:
            context = ssl.create_default_context()
            if args.ca_file:
                context.load_verify_locations(cafile=args.ca_file)
            built.append(context)
        except (OSError, ssl.SSLError) as exc:
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
    from swapper.oci import HostConfig, parse_platforms

    source = parse(args.source)
    hosts: dict[str, HostConfig] = {}
    config = None
    if args.config:
        from swapper.config import load_config_file

        config = load_config_file(args.config)
    if args.target:
        target = parse(args.target)
    elif config is not None:
        from swapper.images import target_reference

        target = parse(target_reference(source, config.target.endpoint))
    else:
        raise ConfigError([("TARGET", "give a TARGET reference, or --config to derive it")])
    registry = None
    if config is not None:  # the configured target: its hosts, repository and push token
        from swapper.wiring import registry_hosts

        hosts.update(registry_hosts(config))
        registry = build_target(config)
    try:
        platforms = parse_platforms(",".join(args.platform) or None) or ()
    except ValueError as exc:
        raise ConfigError([("--platform", str(exc))]) from None
    for host in args.insecure:
        hosts[host.lower()] = HostConfig(plain_http=True)
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
    )
    gc.freeze()
    gc.enable()
    try:
        try:
            import uvloop  # TLS and sockets in C: less CPU per byte copied
        except ImportError:
            result = asyncio.run(copy)
        else:
            result = uvloop.run(copy)
    except CopyError as exc:
        print(f"swapper: copy failed ({exc.reason}): {exc}", file=sys.stderr)
        return 1
    print(summary(result))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    import yaml

    from swapper.config import load_config_file

    config = load_config_file(args.file)
    print(yaml.safe_dump(config.effective(), sort_keys=False), end="")
    return 0


def build_target(config: Config) -> TargetRegistry:
    from swapper.errors import ConfigError

    if config.target.type == "generic":
        from swapper.targets.generic import GenericTarget

        assert config.target.generic is not None
        return GenericTarget(config.target.generic)
    if config.target.type == "aws":
        from swapper.targets.ecr import ECRTarget

        assert config.target.aws is not None
        return ECRTarget(config.target.aws)
    if config.target.type == "gcp":
        from swapper.targets.gar import GARTarget
        from swapper.wiring import registry_hosts

        assert config.target.gcp is not None
        return GARTarget(config.target.gcp, hosts=registry_hosts(config))
    raise ConfigError(
        [
            (
                "target.type",
                f"{config.target.type!r} is validated but its registry backend is not in this "
                "build yet; use 'generic', or 'swapper explain' to preview naming",
            )
        ]
    )


def _serve(args: argparse.Namespace) -> int:
    from swapper import logs
    from swapper.config import load_config_file, split_address

    config = load_config_file(args.config)
    overrides: dict[str, Any] = {}
    if args.dry_run:
        overrides["dry_run"] = True
    if args.listen_address:
        split_address(args.listen_address)
        overrides["listen_address"] = args.listen_address
    if args.tls_cert_file:
        overrides["tls_cert_file"] = args.tls_cert_file
    if args.tls_key_file:
        overrides["tls_key_file"] = args.tls_key_file
    config = config.with_overrides(**overrides)
    if not config.tls_cert_file or not config.tls_key_file:
        from swapper.errors import ConfigError

        raise ConfigError([("tlsCertFile", "--tls-cert-file and --tls-key-file are required")])
    logs.configure(config.log_level, config.log_format)
    target = build_target(config)

    from swapper.server import serve

    serve(config, target, args.cert_reload_interval)
    return 0


def _explain(args: argparse.Namespace) -> int:
    import yaml

    from swapper.config import load_config_file

    config = load_config_file(args.config)
    if args.pod:
        pod = yaml.safe_load(Path(args.pod).read_text(encoding="utf-8"))
        if not isinstance(pod, dict):
            print(f"swapper: {args.pod} is not a pod manifest", file=sys.stderr)
            return 2
    elif args.images:
        pod = {
            "metadata": {"name": "explain", "namespace": args.namespace},
            "spec": {
                "containers": [
                    {"name": f"c{i}", "image": image} for i, image in enumerate(args.images)
                ]
            },
        }
    else:
        print("swapper: give IMAGE arguments or --pod FILE", file=sys.stderr)
        return 2
    for line in asyncio.run(explain(config, pod, args.namespace)):
        print(line)
    return 0


async def explain(config: Config, pod: dict[str, Any], namespace: str) -> list[str]:
    """One line per container: what swapper would do with this pod. Contacts nothing: with
    ``imageSwapPolicy: exists`` every image counts as present in the mirror."""
    from swapper.admission import Review
    from swapper.mirror.queue import MemoryCopyQueue
    from swapper.mutation import CONTAINER_FIELDS, Mutator, Policy, describe, requester_of
    from swapper.targets.memory import MemoryTarget

    metadata = pod.get("metadata") or {}
    namespace = metadata.get("namespace") or namespace
    review = Review(
        api_version="admission.k8s.io/v1",
        uid="explain",
        kind="Pod",
        resource="pods",
        sub_resource="",
        operation="CREATE",
        namespace=namespace,
        name=metadata.get("name", ""),
        dry_run=True,
        object=pod,
        old_object=None,
    )
    policy = Policy.from_config(config)
    target = MemoryTarget(policy.endpoint)
    mutator = Mutator(policy, target, MemoryCopyQueue(target))
    settled, candidates = mutator.plan(review)
    for c in candidates:
        target.add_image(c.target)
    decisions = settled + await mutator.resolve(
        candidates, requester_of(review), side_effects=False
    )
    decisions.sort(key=lambda d: (CONTAINER_FIELDS.index(d.container.field), d.container.index))
    return describe(decisions, dry_run=True)[0]


def _certs(args: argparse.Namespace) -> int:
    if args.certs_command == "bootstrap":
        return _certs_bootstrap(args)
    from swapper import certs

    ca = None
    if args.ca_cert or args.ca_key:
        if not (args.ca_cert and args.ca_key):
            print("swapper: --ca-cert and --ca-key go together", file=sys.stderr)
            return 2
        ca = (Path(args.ca_cert).read_bytes(), Path(args.ca_key).read_bytes())
    generated = certs.generate(args.service, args.namespace, args.san, args.days, ca=ca)
    paths = certs.write(generated, Path(args.out))
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


if __name__ == "__main__":
    raise SystemExit(main())
