"""The peers ``make bench`` measures swapper against, built when missing, at pinned releases.

Everything lands in a cache outside the work tree, ``$SWAPPER_BENCH_CACHE`` (default
``~/.cache/swapper-bench``), keyed by version, so a bump builds anew and nothing is vendored:

- Go tools with ``go install MODULE/PACKAGE@VERSION`` (GOPATH, GOMODCACHE, GOCACHE and GOBIN
  all in the cache; modules from the Go module proxy): ``crane`` (go-containerregistry),
  ``regctl`` (regclient) and ``k8s-image-swapper``;
- Python packages with ``pip`` into a virtual environment of their own in the cache (never
  ``.venv``): ``aioregistry`` (the Python peer of the copy benchmark) and ``py-spy`` (to
  profile ``swapper mirror``);
- ``skopeo`` is Debian's (``make bench`` installs it); only its version is read here.

A peer that cannot be built is recorded with the reason (the last lines the build printed) in
``status.json`` beside the binaries; the benchmarks put that reason in their tables and go on.
A failed build is tried again on the next run. Standard library only: ``make bench`` runs it
with the system's Python before anything else.

    python3 -m benchmarks.peers [--rebuild NAME] [--json]
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
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE = Path(os.environ.get("SWAPPER_BENCH_CACHE") or Path.home() / ".cache" / "swapper-bench")
GO = os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"
STATUS = CACHE / "status.json"


@dataclass(frozen=True)
class Spec:
    name: str
    version: str
    kind: str  # "go", "pip" or "debian"
    package: str  # Go package path, pip requirement name, or Debian package
    what: str  # for the tables
    tags: str = ""  # Go build tags


SPECS = [
    Spec(
        "crane",
        "v0.22.1",
        "go",
        "github.com/google/go-containerregistry/cmd/crane",
        "go-containerregistry's crane",
    ),
    Spec("regctl", "v0.11.7", "go", "github.com/regclient/regclient/cmd/regctl", "regclient"),
    Spec(
        "k8s-image-swapper",
        "v1.5.10",
        "go",
        "github.com/estahn/k8s-image-swapper",
        "the webhook swapper replaces",
        # containers/image without cgo: its own OpenPGP, no btrfs or devicemapper drivers
        "containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper",
    ),
    Spec("aioregistry", "0.7.3", "pip", "aioregistry", "Python registry client library"),
    Spec("py-spy", "0.4.3", "pip", "py-spy", "sampling profiler (for swapper mirror)"),
    Spec("skopeo", "", "debian", "skopeo", "containers/image, Debian's build"),
]


@dataclass
class Peer:
    name: str
    version: str
    what: str
    path: str | None  # the executable (for aioregistry: the venv's python)
    reason: str | None = None  # why it is missing
    build_seconds: float | None = None  # the build that made it (cached runs keep the first)

    @property
    def ok(self) -> bool:
        return self.path is not None


def _load() -> dict[str, dict[str, object]]:
    try:
        return json.loads(STATUS.read_text())
    except (OSError, ValueError):
        return {}


def _save(status: dict[str, dict[str, object]]) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    STATUS.write_text(json.dumps(status, indent=2, sort_keys=True) + "\n")


def _tail(text: str, lines: int = 4) -> str:
    """The last lines a build printed, on one line; addresses left out (the tables name no
    hosts)."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return re.sub(r"\w+://\S+", "<url>", " / ".join(kept))[-600:] or "no output"


def go_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOPATH=str(CACHE / "go"),
        GOMODCACHE=str(CACHE / "go" / "pkg" / "mod"),
        GOCACHE=str(CACHE / "go-build"),
        GOFLAGS="-modcacherw -buildvcs=false",
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
    )
    env["PATH"] = f"{Path(GO).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _binary(spec: Spec) -> Path:
    return CACHE / "bin" / f"{spec.name}-{spec.version}" / spec.package.rsplit("/", 1)[-1]


def _venv() -> Path:
    return CACHE / "venv"


def _build_go(spec: Spec) -> tuple[Path | None, str | None]:
    target = _binary(spec)
    env = go_environment()
    env["GOBIN"] = str(target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not Path(GO).exists() and not shutil.which(GO):
        return None, f"no Go toolchain ({GO})"
    try:
        done = subprocess.run(
            [
                GO,
                "install",
                *([f"-tags={spec.tags}"] if spec.tags else []),
                f"{spec.package}@{spec.version}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except subprocess.TimeoutExpired:
        return None, "go install did not finish in 30 minutes"
    if done.returncode != 0 or not target.exists():
        said = re.sub(r"(go: )?(\S+@\S+: )+", "", _tail(done.stderr, 2))
        said = said.replace("reading <url> ", "the Go module proxy answered ")
        return None, f"go install {spec.package}@{spec.version}: {said}"
    return target, None


def _build_pip(spec: Spec) -> tuple[Path | None, str | None]:
    venv = _venv()
    python = venv / "bin" / "python"
    if not python.exists():
        made = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True
        )
        if made.returncode != 0:
            return None, f"python -m venv failed: {_tail(made.stderr)}"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{spec.package}=={spec.version}"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        return None, f"pip install {spec.package}=={spec.version} failed: {_tail(done.stderr)}"
    return _pip_path(spec), None


def _pip_path(spec: Spec) -> Path:
    bin_dir = _venv() / "bin"
    return bin_dir / ("python" if spec.name == "aioregistry" else spec.name)


def _pip_present(spec: Spec) -> bool:
    python = _venv() / "bin" / "python"
    if not python.exists():
        return False
    found = subprocess.run(
        [str(python), "-m", "pip", "show", spec.package], capture_output=True, text=True
    )
    return f"Version: {spec.version}" in found.stdout and _pip_path(spec).exists()


def _debian(spec: Spec) -> Peer:
    path = shutil.which(spec.package)
    if path is None:
        return Peer(spec.name, "", spec.what, None, f"Debian {spec.package} is not installed")
    shown = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", spec.package], capture_output=True, text=True
    )
    return Peer(spec.name, shown.stdout.strip() or "?", spec.what, path)


def ensure(names: list[str] | None = None, rebuild: tuple[str, ...] = ()) -> dict[str, Peer]:
    """Every peer (or those in ``names``), built if missing; name -> Peer."""
    status = _load()
    peers: dict[str, Peer] = {}
    for spec in SPECS:
        if names is not None and spec.name not in names:
            continue
        if spec.kind == "debian":
            peers[spec.name] = _debian(spec)
            continue
        key = f"{spec.name}@{spec.version}"
        known = status.get(key, {})
        present = _binary(spec).exists() if spec.kind == "go" else _pip_present(spec)
        if present and spec.name not in rebuild:
            seconds = known.get("build_seconds")
            path = _binary(spec) if spec.kind == "go" else _pip_path(spec)
            peers[spec.name] = Peer(
                spec.name,
                spec.version,
                spec.what,
                str(path),
                build_seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
            )
            continue
        print(f"peers: building {key} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        built, reason = _build_go(spec) if spec.kind == "go" else _build_pip(spec)
        seconds = round(time.monotonic() - started, 1)
        peer = Peer(spec.name, spec.version, spec.what, str(built) if built else None, reason)
        if built:
            peer.build_seconds = seconds
            status[key] = {"build_seconds": seconds, "built": time.strftime("%Y-%m-%d %H:%M")}
        else:
            status[key] = {"failed": reason, "tried": time.strftime("%Y-%m-%d %H:%M")}
        outcome = f"built in {seconds} s" if built else f"FAILED: {reason}"
        print(f"peers: {key} {outcome}", file=sys.stderr, flush=True)
        _save(status)
        peers[spec.name] = peer
    return peers


def versions_table(peers: dict[str, Peer]) -> str:
    lines = [
        "| peer | version | what | built | build time |",
        "| --- | --- | --- | --- | ---: |",
    ]
    for peer in peers.values():
        built = "yes" if peer.ok else f"no: {peer.reason}"
        seconds = f"{peer.build_seconds:.0f} s" if peer.build_seconds is not None else ""
        lines.append(f"| {peer.name} | {peer.version} | {peer.what} | {built} | {seconds} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuild", action="append", default=[], help="build NAME again")
    parser.add_argument("--json", action="store_true", help="print the peers as JSON")
    args = parser.parse_args()
    peers = ensure(rebuild=tuple(args.rebuild))
    if args.json:
        print(json.dumps({name: asdict(peer) for name, peer in peers.items()}, indent=2))
    else:
        print(f"peers in {CACHE}:\n")
        print(versions_table(peers))
    return 0  # a peer that cannot be built is reported, and the benchmarks go on


if __name__ == "__main__":
    sys.exit(main())
