"""The command line: ``swapper serve | check-config | explain | audit | mirror | certs``.

The parser and the error handling are here; each command is a module of this package with a
``run(args)`` (:data:`COMMANDS`), imported when it runs, and heavy modules are imported inside
each command, so a command loads only what it uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from swapper.errors import SwapperError

if TYPE_CHECKING:
    from swapper.config import Config
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


COMMANDS = {
    "serve": "serve",
    "check-config": "check_config",
    "explain": "explain",
    "audit": "audit",
    "mirror": "mirror",
    "certs": "certs",
}
"""Each command's module in this package."""


def main(argv: Sequence[str] | None = None) -> int:
    return _run(_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    """Run the command; a user error is one line per problem on stderr and exit code 2."""
    from importlib import import_module

    from swapper.errors import ConfigError

    try:
        command: Any = import_module(f"swapper.cli.{COMMANDS[args.command]}")
        code: int = command.run(args)
        return code
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
    args: argparse.Namespace | None = None
    try:
        args = _parser().parse_args()
        code = _run(args)
    except KeyboardInterrupt:  # however early: one line, never a traceback
        print("swapper: interrupted", file=sys.stderr)
        code = 130
    if args is not None and args.command == "mirror":
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


def _load_config(path: str) -> Config:
    """The config file at ``path``; ``-`` reads it from standard input."""
    from swapper.config import load_config_file

    return load_config_file("/dev/stdin" if path == "-" else path)


def build_target(config: Config) -> TargetRegistry:
    """The configured target registry (:func:`swapper.targets.factory.build_target`)."""
    from swapper.targets.factory import build_target as build

    return build(config)


if __name__ == "__main__":
    raise SystemExit(main())
