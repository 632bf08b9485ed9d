"""Build the real Kubernetes API server and etcd that the end-to-end tests run against.

Both are built with ``go build`` from their own Go modules at pinned release versions, once,
into a cache directory outside the work tree (``$SWAPPER_E2E_CACHE``, default
``~/.cache/swapper-e2e``), keyed by version: a second call finds them and returns at once.
No code of either project is committed here; the build module (a ``go.mod``, and for etcd a
three-line ``main`` that calls its ``etcdmain``) is generated inside the cache.

``k8s.io/kubernetes`` cannot be required as an ordinary module: its ``go.mod`` points every
``k8s.io/*`` staging module at ``./staging/src/...``. The ``replace`` lines that pin each of
them to its published ``v0.<minor>.<patch>`` are generated from that ``go.mod``.

Usage: ``python tests/e2e/binaries.py [--versions v1.37.2 ...]`` builds what is missing and
prints the paths.
Standard library only, so it runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: The Kubernetes releases the tests run against: the newest and the oldest minor the chart
#: README claims. The first is the default; ``SWAPPER_E2E_KUBE`` picks another.
KUBERNETES_VERSIONS = ("v1.37.2", "v1.29.6")
#: etcd serving every API server above (the v3 API is the same from 3.4 on).
ETCD_VERSION = "v3.6.16"


#: What is built from k8s.io/kubernetes: the API server, and kubectl at the same version (so
#: its version skew with the server is nil and its warnings and dry-run are the real ones).
KUBERNETES_COMMANDS = ("kube-apiserver", "kubectl")
#: What the node end-to-end tests add (tests/e2e/node.py): the kubelet at the same version, run
#: against Debian's containerd 1.6. Built apart from the control plane, so a run without the node
#: tests never waits for it. kubelet 1.38 drops containerd 1.6 (its CRI v1 floor moves to
#: containerd 2), and Debian bookworm has no containerd 2: 1.37 is the newest that runs here.
NODE_COMMANDS = ("kubelet",)


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kubectl: Path
    etcd: Path
    kubernetes_version: str
    etcd_version: str


def cache_root() -> Path:
    configured = os.environ.get("SWAPPER_E2E_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "swapper-e2e"


def selected_kubernetes_version() -> str:
    return os.environ.get("SWAPPER_E2E_KUBE", KUBERNETES_VERSIONS[0])


def _go(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"go {' '.join(args)} failed in {cwd}:\n{result.stderr.strip()}")
    return result.stdout


def _go_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOFLAGS="-mod=mod",
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
        GOWORK="off",
        # The module download cache lives beside the binaries, so the build never depends on
        # what another project left in ~/go.
        GOMODCACHE=str(cache_root() / "gomodcache"),
    )
    env.setdefault("GOPATH", str(cache_root() / "gopath"))
    return env


def staging_replacements(kubernetes_go_mod: str, kubernetes_version: str) -> list[str]:
    """The ``replace`` lines pinning each staging module of k8s.io/kubernetes to its release.

    ``k8s.io/api => ./staging/src/k8s.io/api`` becomes ``k8s.io/api => k8s.io/api v0.37.2``
    for kubernetes ``v1.37.2``.
    """
    staging_version = "v0." + kubernetes_version.removeprefix("v1.")
    lines = []
    for module in re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", kubernetes_go_mod, re.M):
        lines.append(f"replace {module} => {module} {staging_version}")
    if not lines:
        raise SystemExit("no staging replace lines found in k8s.io/kubernetes's go.mod")
    return lines


#: Staging modules some releases import that the Go module proxy no longer serves at their own
#: version, and the nearest release it serves: the kubelet of 1.29 imports
#: k8s.io/legacy-cloud-providers (its GCP credential provider), whose v0.29.x are gone (403).
UNSERVED_STAGING = {"k8s.io/legacy-cloud-providers": "v0.30.14"}


def _served(line: str, kubernetes_version: str) -> str:
    """``line`` (a staging ``replace``) with :data:`UNSERVED_STAGING`'s version where the
    release's own is one of the unserved (v0.29 and older)."""
    module = line.split()[1]
    minor = int(kubernetes_version.split(".")[1])
    if module in UNSERVED_STAGING and minor < 30:
        return f"replace {module} => {module} {UNSERVED_STAGING[module]}"
    return line


def _atomic_install(built: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_suffix(".partial")
    shutil.copy2(built, partial)
    partial.chmod(0o755)
    partial.replace(final)


def _kubernetes_dir(version: str) -> Path:
    return cache_root() / "kubernetes" / version


def build_kubernetes(version: str, commands: tuple[str, ...] = KUBERNETES_COMMANDS) -> Path:
    """``commands`` of k8s.io/kubernetes ``version`` (kube-apiserver and kubectl unless told),
    in the returned folder."""
    final_dir = _kubernetes_dir(version)
    if all((final_dir / command).exists() for command in commands):
        return final_dir
    work = cache_root() / "build" / f"kubernetes-{version}"
    work.mkdir(parents=True, exist_ok=True)
    env = _go_env(work)
    (work / "go.mod").write_text("module swapper-e2e/kube-apiserver\n\ngo 1.21\n")
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@{version}"], work, env))
    upstream = Path(info["GoMod"]).read_text()
    go_line = re.search(r"^go (\S+)", upstream, re.M)
    replaces = "\n".join(_served(r, version) for r in staging_replacements(upstream, version))
    (work / "go.mod").write_text(
        f"module swapper-e2e/kube-apiserver\n\ngo {go_line.group(1) if go_line else '1.21'}\n\n"
        f"require k8s.io/kubernetes {version}\n\n{replaces}\n"
    )
    imports = "".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"\n' for c in commands)
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports})\n")
    # No ``go mod tidy``: it would resolve every build tag's imports, and the legacy cloud
    # providers of older releases are not served by the module proxy. ``-mod=mod`` adds only
    # what the build below needs, and ``providerless`` leaves those providers out.
    major, minor = version.removeprefix("v").split(".")[:2]
    ldflags = " ".join(
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in (
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        )
    )
    for command in commands:
        if (final_dir / command).exists():
            continue
        out = work / command
        package = f"k8s.io/kubernetes/cmd/{command}"
        flags = ["-tags", "providerless", "-trimpath", "-ldflags", f"-s -w {ldflags}"]
        _go(["build", *flags, "-o", str(out), package], work, env)
        _atomic_install(out, final_dir / command)
    return final_dir


def build_etcd(version: str) -> Path:
    final = cache_root() / "etcd" / version / "etcd"
    if final.exists():
        return final
    work = cache_root() / "build" / f"etcd-{version}"
    work.mkdir(parents=True, exist_ok=True)
    env = _go_env(work)
    (work / "go.mod").write_text("module swapper-e2e/etcd\n\ngo 1.21\n")
    (work / "main.go").write_text(
        'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    _go(["get", f"go.etcd.io/etcd/server/v3@{version}"], work, env)
    _go(["mod", "tidy"], work, env)
    out = work / "etcd"
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."], work, env)
    _atomic_install(out, final)
    return final


def ensure(kubernetes_version: str | None = None) -> Binaries:
    version = kubernetes_version or selected_kubernetes_version()
    found = built(version)
    if found is not None:
        return found
    if shutil.which("go") is None:
        raise SystemExit("the end-to-end tests need Go to build kube-apiserver and etcd")
    folder = build_kubernetes(version)
    return Binaries(
        kube_apiserver=folder / "kube-apiserver",
        kubectl=folder / "kubectl",
        etcd=build_etcd(ETCD_VERSION),
        kubernetes_version=version,
        etcd_version=ETCD_VERSION,
    )


def kubelet(kubernetes_version: str | None = None, build: bool = True) -> Path | None:
    """The kubelet of ``kubernetes_version`` (the selected one unless told), built when
    missing and ``build``; None when missing and not ``build``."""
    version = kubernetes_version or selected_kubernetes_version()
    path = _kubernetes_dir(version) / "kubelet"
    if path.exists():
        return path
    if not build:
        return None
    if shutil.which("go") is None:
        raise SystemExit("the node end-to-end tests need Go to build the kubelet")
    return build_kubernetes(version, NODE_COMMANDS) / "kubelet"


def built(kubernetes_version: str | None = None) -> Binaries | None:
    """The binaries if they are in the cache already, else None (never builds)."""
    version = kubernetes_version or selected_kubernetes_version()
    folder = _kubernetes_dir(version)
    etcd = cache_root() / "etcd" / ETCD_VERSION / "etcd"
    if all((folder / c).exists() for c in KUBERNETES_COMMANDS) and etcd.exists():
        return Binaries(folder / "kube-apiserver", folder / "kubectl", etcd, version, ETCD_VERSION)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--versions",
        nargs="+",
        default=[selected_kubernetes_version()],
        metavar="vX.Y.Z",
        help=f"Kubernetes releases to build (the tests cover {' '.join(KUBERNETES_VERSIONS)})",
    )
    parser.add_argument("--list", action="store_true", help="print the covered releases and exit")
    args = parser.parse_args()
    if args.list:
        print(" ".join(KUBERNETES_VERSIONS))
        return
    versions = args.versions
    for version in versions:
        start = time.monotonic()
        cached = built(version) is not None
        binaries = ensure(version)
        took = time.monotonic() - start
        state = "cached" if cached else f"built in {took:.0f} s"
        print(f"kube-apiserver {version}: {binaries.kube_apiserver} ({state})")
        print(f"etcd {binaries.etcd_version}: {binaries.etcd}")
        start = time.monotonic()
        cached = kubelet(version, build=False) is not None
        path = kubelet(version)
        state = "cached" if cached else f"built in {time.monotonic() - start:.0f} s"
        print(f"kubelet {version}: {path} ({state})")


if __name__ == "__main__":
    sys.exit(main())
