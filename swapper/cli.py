"""The command line: ``swapper serve | check-config | explain | audit | mirror | certs``.

Heavy modules are imported inside each command, so a command loads only what it uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swapper.errors import SwapperError

if TYPE_CHECKING:
    import ssl
    import threading

    from swapper.config import Config
    from swapper.images import ImageReference
    from swapper.targets.base import TargetRegistry


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, when it has one worth showing.

    Its width is the terminal's as ``argparse`` finds it, without importing ``shutil`` (and its
    compression modules) for it: ``add_argument`` makes a formatter, so every command would."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or not action.option_strings
            or default in (None, False, [], "", argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def _columns() -> int:
    """``shutil.get_terminal_size().columns``: ``$COLUMNS``, else stdout's terminal, else 80."""
    import os

    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Parser(argparse.ArgumentParser):
    """A parser (and, as their class, its subcommands' parsers) with :class:`_HelpFormatter`
    from the start."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("swapper")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked (``importlib.metadata``
    is a fifth of a ``swapper mirror`` start-up)."""

    def __init__(self, option_strings: list[str], dest: str, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"swapper {_version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="swapper",
        description="Kubernetes admission webhook that mirrors pod images to your own registry.",
    )
    parser.add_argument("--version", action=_VersionAction)
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
        help="how often the certificate files are checked for rotation",
    )

    check = sub.add_parser(
        "check-config", help="validate a config file, print the effective config"
    )
    check.add_argument("file", metavar="FILE", help="the config file, or - for standard input")

    explain = sub.add_parser(
        "explain", help="print the decision for each image or pod container, contacting nothing"
    )
    explain.add_argument("--config", required=True, metavar="FILE", help="YAML config file")
    explain.add_argument(
        "--namespace", default="default", help="namespace of pods whose manifest names none"
    )
    explain.add_argument(
        "-f",
        "--pod",
        metavar="FILE",
        help="manifests (YAML or JSON, several documents allowed, - for standard input): Pods, "
        "or Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs (their pod "
        "template)",
    )
    explain.add_argument("images", nargs="*", metavar="IMAGE", help="images to explain")

    audit = sub.add_parser(
        "audit",
        help="report what admission would decide for the pods already in a cluster "
        "(reads pods only; writes nothing)",
    )
    audit.add_argument("--config", required=True, metavar="FILE", help="YAML config file")
    audit.add_argument(
        "--kubeconfig", help="default: the pod's service account in a cluster, else $KUBECONFIG"
    )
    audit.add_argument("--context", help="kubeconfig context (default: its current one)")
    audit.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="audit only this namespace (repeat for several); default: all namespaces",
    )
    audit.add_argument(
        "-o", "--output", choices=("table", "json", "html"), default="table", help="format"
    )
    audit.add_argument(
        "--check-registries",
        action="store_true",
        help="ask the mirror whether it has each image, and each source whether it answers "
        "anonymously (HEAD requests only)",
    )
    audit.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="for each registry check (--check-registries)",
    )
    audit.add_argument(
        "--cleanup",
        action="store_true",
        help="also run cleanup as a dry run against the target (cleanup.enabled in --config): "
        "list the images it would delete now and why it keeps the others; deletes nothing",
    )
    audit.add_argument("--out", metavar="FILE", help="write the report here instead of stdout")

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
        help="copy only these platforms of an index (repeat, or comma-separated); default: all",
    )
    mirror.add_argument(
        "--authfile", metavar="FILE", help='docker config.json with registry credentials ("auths")'
    )
    mirror.add_argument(
        "--insecure",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="speak plain HTTP to this registry (repeat, or comma-separated)",
    )
    mirror.add_argument("--ca-file", metavar="PEM", help="extra CA bundle for HTTPS registries")
    mirror.add_argument(
        "--no-referrers",
        action="store_true",
        help="copy the image without what refers to it (signatures, attestations, SBOMs); "
        "default: with them, unless the --config says mirror.referrers: false",
    )
    mirror.add_argument(
        "--referrer-type",
        action="append",
        default=[],
        metavar="ARTIFACT_TYPE",
        help="copy only referrers of this artifact type (repeat; * matches any text); "
        "default: mirror.referrerTypes of the --config, or all",
    )

    certs = sub.add_parser("certs", help="certificate tooling")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True, metavar="COMMAND")
    gen = certs_sub.add_parser("generate", help="a CA and a serving certificate for the webhook")
    gen.add_argument("--service", default="swapper", help="the webhook's Service name")
    gen.add_argument("--namespace", default="swapper", help="the Service's namespace")
    gen.add_argument("--san", action="append", default=[], help="extra DNS name or IP (repeat)")
    gen.add_argument("--days", type=int, default=365, help="serving certificate validity")
    gen.add_argument("--out", default="certs/dev", help="output folder")
    gen.add_argument(
        "--ca-cert",
        help="sign with this CA certificate; default: the CA already in --out, else a new one",
    )
    gen.add_argument("--ca-key", help="the key of --ca-cert")
    gen.add_argument(
        "--force",
        action="store_true",
        help="make a new CA even if --out holds one (every caBundle made from the old one breaks)",
    )
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
    """Run the command; a user error is one line per problem on stderr and exit code 2."""
    from swapper.errors import ConfigError

    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check-config":
            return _check_config(args)
        if args.command == "explain":
            return _explain(args)
        if args.command == "mirror":
            return _mirror(args)
        if args.command == "audit":
            return _audit(args)
        return _certs(args)
    except ConfigError as exc:
        for key, message in exc.problems:
            where = exc.source if key == "(file)" else f"{exc.source}: {key}"
            line = message if exc.source in message else f"{where}: {message}"
            print(f"swapper: {line}", file=sys.stderr)
        return 2
    except SwapperError as exc:
        print(f"swapper: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``| head``): nothing left to tell it
        return 0
    except OSError as exc:  # a file named on the command line that cannot be read or written
        name = f"{exc.filename}: " if exc.filename else ""
        print(f"swapper: {name}{exc.strerror or exc}", file=sys.stderr)
        return 2


def console() -> None:
    """The ``swapper`` command: :func:`main`, then exit.

    ``swapper mirror`` leaves without tearing the interpreter down: once its copy is done and
    its output written, nothing is left to clean up (connections closed, the TLS thread
    joined), and unloading every module would keep its user waiting about 25 ms more.
    """
    args = _parser().parse_args()
    try:
        code = _run(args)
    except KeyboardInterrupt:
        print("swapper: interrupted", file=sys.stderr)
        code = 130
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
    # Meanwhile a thread builds the TLS context as swapper.oci.tls_context(ca_file=...) would
    # (the system's CAs looked up lazily where it can: swapper.oci._trust), mostly outside the
    # GIL. (ssl and threading are already imported, by asyncio: the thread imports only that
    # small module.)
    import gc
    import ssl
    import threading

    # A one-off copy makes little cyclic garbage: no collections while importing; afterwards
    # only the objects made since are ever looked at (gc.freeze below).
    gc.disable()
    built: list[ssl.SSLContext | BaseException] = []

    def build_tls_context() -> None:
        from swapper.oci._trust import client_context

        try:
            built.append(client_context(args.ca_file))
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


def _check_config(args: argparse.Namespace) -> int:
    import yaml

    config = _load_config(args.file)
    for key, message in config.warnings:  # settings that do nothing: said, but no refusal
        print(f"swapper: warning: {key}: {message}", file=sys.stderr)

    class Dumper(yaml.SafeDumper):
        """Multi-line strings (access and lifecycle policies) as ``|`` blocks."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    print(yaml.dump(config.effective(), Dumper=Dumper, sort_keys=False), end="")
    return 0


def _load_config(path: str) -> Config:
    """The config file at ``path``; ``-`` reads it from standard input."""
    from swapper.config import load_config_file

    return load_config_file("/dev/stdin" if path == "-" else path)


def build_target(config: Config) -> TargetRegistry:
    """The configured target registry (:func:`swapper.targets.factory.build_target`)."""
    from swapper.targets.factory import build_target as build

    return build(config)


def _serve(args: argparse.Namespace) -> int:
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


def _read_manifests(path: str) -> list[tuple[str, dict[str, Any]]]:
    import yaml

    from swapper.errors import ConfigError

    source = "standard input" if path == "-" else path
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError([("(file)", f"not valid YAML: {reason}")], source) from None
    from swapper.pods import pods_of

    pods = [pod for document in documents for pod in pods_of(document, source)]
    if not pods:
        raise ConfigError([("(file)", "no manifest in it")], source)
    return pods


def _explain(args: argparse.Namespace) -> int:
    from swapper.errors import ConfigError

    config = _load_config(args.config)
    if args.pod:
        pods = _read_manifests(args.pod)
    elif args.images:
        containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(args.images)]
        pods = [("", {"metadata": {"name": "explain"}, "spec": {"containers": containers}})]
    else:
        raise ConfigError([("IMAGE", "give IMAGE arguments or --pod FILE")], "command line")
    import asyncio

    for title, pod in pods:
        if len(pods) > 1:
            print(f"# {title}")
        for line in asyncio.run(explain(config, pod, args.namespace)):
            print(line)
    for note in explain_notes(config):
        print(f"note: {note}")
    return 0


def explain_notes(config: Config) -> list[str]:
    """What ``explain`` assumed instead of asking (it contacts nothing)."""
    notes = []
    if config.image_swap_policy == "exists":
        notes.append(
            "imageSwapPolicy is exists: every image was taken to be in the mirror; swapper "
            "serve swaps only those that are there, or that a copy puts there in time"
        )
    if config.source.check_access:
        notes.append(
            "source.checkAccess: the source registries were not asked; swapper serve swaps a "
            "private image only for pods whose own pull secrets can read it"
        )
    if config.mirror.verify:
        notes.append(
            "mirror.verify: signatures were not checked; swapper serve copies and swaps an image "
            "a rule applies to only when a signature verifies with one of the rule's keys "
            "(otherwise: unverified-signature)"
        )
    return notes


async def explain(config: Config, pod: dict[str, Any], namespace: str) -> list[str]:
    """One line per container: what swapper would do with this pod. Contacts nothing: with
    ``imageSwapPolicy: exists`` every image counts as present in the mirror."""
    from swapper.admission.answer import describe
    from swapper.admission.review import Mode
    from swapper.mirror.memory import MemoryCopyQueue
    from swapper.mirror.trust import AssumedSigned
    from swapper.mutation import Mutator, Policy, in_container_order, requester_of
    from swapper.pods import namespace_of
    from swapper.targets.memory import MemoryTarget

    namespace = namespace_of(pod, namespace)
    policy = Policy.from_config(config)
    target = MemoryTarget(policy.endpoint)
    mutator = Mutator(policy, target, MemoryCopyQueue(target), signatures=AssumedSigned())
    settled, candidates = mutator.plan(pod, namespace)
    needs_signature = {
        c.container.name: policy.verify.describe(rules)
        for c in candidates
        if (rules := policy.verify.matching(c.source))
    }
    for c in candidates:
        target.add_image(c.target)
    mode = Mode.AUDIT  # what would be done, each container reported, as in dryRun
    resolved = await mutator.resolve(candidates, requester_of(pod, namespace), mode.side_effects)
    decisions = in_container_order(settled, resolved)
    lines = []
    for decision in decisions:
        line = " ".join(describe([decision], mode)[0])
        if decision.filter_index is not None:
            expression = config.source.filters[decision.filter_index].jmespath
            line += f" ({expression})"
        if decision.swapped and decision.container.name in needs_signature:
            line += (
                f" (only if signed: {needs_signature[decision.container.name]}, not checked here)"
            )
        lines.append(line)
    return lines


def _audit(args: argparse.Namespace) -> int:
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

    import asyncio

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


if __name__ == "__main__":
    raise SystemExit(main())
