"""The peers ``make bench`` measures swapper against, built when missing, at pinned releases.

Everything lands in a cache outside the work tree, ``$SWAPPER_BENCH_CACHE`` (default
``~/.cache/swapper-bench``), keyed by version, so a bump builds anew and nothing is vendored:

- Go tools with ``go install MODULE/PACKAGE@VERSION`` (GOPATH, GOMODCACHE, GOCACHE and GOBIN
  all in the cache; modules from the Go module proxy): ``crane`` (go-containerregistry) and
  ``regctl`` (regclient);
- Go programs the module proxy will not serve, from a fetched snapshot of their repository (a
  bare git directory, ``/work/.mirror/OWNER+NAME/repo`` unless ``$SWAPPER_BENCH_MIRRORS`` names
  another root or ``$SWAPPER_BENCH_GIT_<NAME>`` the directory itself): the pinned tag must
  resolve to the pinned commit (or the build is refused), the commit's files are exported with
  ``git archive`` into the cache (never the work tree) and built there with ``CGO_ENABLED=0 go
  build``, their ``go.mod`` dependencies from the Go module proxy: ``k8s-image-swapper``;
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
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
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
    kind: str  # "go", "snapshot", "pip" or "debian"
    package: str  # Go package path (module path for "snapshot"), pip name, or Debian package
    what: str  # for the tables
    tags: str = ""  # Go build tags
    commit: str = ""  # "snapshot": the commit ``version`` (a tag) must resolve to
    repo: str = ""  # "snapshot": OWNER/NAME of the fetched repository


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
        "v1.6.6",  # its newest release tag in the snapshot (2026-12-04)
        "snapshot",  # the module proxy refuses this module (403, "not available")
        "github.com/estahn/k8s-image-swapper",
        "the webhook swapper replaces",
        # containers/image without cgo: its own OpenPGP, no btrfs or devicemapper drivers
        "containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper",
        commit="bc2094ab2438c0f13d5a353d77b6bd883880f8a3",
        repo="estahn/k8s-image-swapper",
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
    commit: str | None = None  # built from a snapshot: the commit its tag resolved to

    @property
    def ok(self) -> bool:
        return self.path is not None

    @property
    def label(self) -> str:
        """Version and, for a snapshot build, the commit: what the tables print."""
        return f"{self.version} (commit {self.commit[:12]})" if self.commit else self.version


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
    folder = f"{spec.name}-{spec.version}" + (f"-{spec.commit[:12]}" if spec.commit else "")
    return CACHE / "bin" / folder / spec.package.rsplit("/", 1)[-1]


def git_dir(spec: Spec) -> Path:
    """The fetched snapshot of ``spec.repo``: a bare git directory."""
    own = os.environ.get("SWAPPER_BENCH_GIT_" + re.sub(r"\W", "_", spec.name).upper())
    if own:
        return Path(own)
    root = Path(os.environ.get("SWAPPER_BENCH_MIRRORS") or "/work/.mirror")
    return root / spec.repo.replace("/", "+") / "repo"


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", f"--git-dir={directory}", *args], capture_output=True, timeout=300
    )


def export_snapshot(spec: Spec, into: Path) -> str | None:
    """The files of ``spec.commit`` in ``into`` (emptied first) with ``git archive``, once its
    tag is checked to resolve to that commit; None, or why not."""
    directory = git_dir(spec)
    fetch = f"fetch github:{spec.repo} with the search tool's fetch"
    if not directory.is_dir():
        return f"no snapshot of {spec.repo} at {directory}: {fetch}"
    if shutil.which("git") is None:
        return "git is not installed"
    found = _git(
        directory, "rev-parse", "--verify", "--quiet", f"refs/tags/{spec.version}^{{commit}}"
    )
    if found.returncode != 0:
        return f"tag {spec.version} is not in the snapshot at {directory}: {fetch} again"
    resolved = found.stdout.decode().strip()
    if resolved != spec.commit:
        return (
            f"tag {spec.version} resolves to {resolved} in {directory}, not the pinned"
            f" {spec.commit}: refused"
        )
    archive = _git(directory, "archive", "--format=tar", spec.commit)
    if archive.returncode != 0:
        return f"git archive {spec.commit} failed: {_tail(archive.stderr.decode(errors='replace'))}"
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later: no links out of ``into``
            tar.extractall(into, filter="data")
        else:  # the archive is git's own, of a commit whose tag was checked
            tar.extractall(into)
    return None


def _build_snapshot(spec: Spec) -> tuple[Path | None, str | None]:
    """``spec.version`` of ``spec.repo`` from its snapshot: exported into the cache and built
    there as its releases are (``CGO_ENABLED=0``, ``-trimpath``, ``-s -w``), with the build
    tags; its modules from the Go module proxy into the cache's GOMODCACHE."""
    if not Path(GO).exists() and not shutil.which(GO):
        return None, f"no Go toolchain ({GO})"
    source = CACHE / "src" / f"{spec.name}-{spec.version}-{spec.commit[:12]}"
    reason = export_snapshot(spec, source)
    if reason:
        return None, reason
    target = _binary(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    command = [GO, "build", "-trimpath", "-ldflags=-s -w", "-o", str(partial)]
    command += [*([f"-tags={spec.tags}"] if spec.tags else []), "."]
    try:
        done = subprocess.run(
            command, cwd=source, env=go_environment(), capture_output=True, text=True, timeout=3600
        )
    except subprocess.TimeoutExpired:
        return None, "go build did not finish in 60 minutes"
    if done.returncode != 0 or not partial.exists():
        said = _tail(done.stderr, 3).replace("reading <url> ", "the Go module proxy answered ")
        return None, f"go build of {spec.repo} {spec.version} ({spec.commit[:12]}): {said}"
    partial.replace(target)
    return target, None


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
        golang = spec.kind in ("go", "snapshot")
        present = _binary(spec).exists() if golang else _pip_present(spec)
        commit = spec.commit or None
        if present and spec.name not in rebuild and known.get("commit") == commit:
            seconds = known.get("build_seconds")
            path = _binary(spec) if golang else _pip_path(spec)
            peers[spec.name] = Peer(
                spec.name,
                spec.version,
                spec.what,
                str(path),
                build_seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
                commit=commit,
            )
            continue
        print(f"peers: building {key} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        build = {"go": _build_go, "snapshot": _build_snapshot}.get(spec.kind, _build_pip)
        built, reason = build(spec)
        seconds = round(time.monotonic() - started, 1)
        peer = Peer(spec.name, spec.version, spec.what, str(built) if built else None, reason)
        peer.commit = commit
        record: dict[str, object] = {"commit": commit} if commit else {}
        if built:
            peer.build_seconds = seconds
            record.update(build_seconds=seconds, built=time.strftime("%Y-%m-%d %H:%M"))
        else:
            record.update(failed=reason, tried=time.strftime("%Y-%m-%d %H:%M"))
        status[key] = record
        outcome = f"built in {seconds} s" if built else f"FAILED: {reason}"
        print(f"peers: {key} {outcome}", file=sys.stderr, flush=True)
        _save(status)
        peers[spec.name] = peer
    return peers


def versions_table(peers: dict[str, Peer]) -> str:
    lines = [
        "| peer | version | commit | what | built | build time |",
        "| --- | --- | --- | --- | --- | ---: |",
    ]
    for peer in peers.values():
        built = "yes" if peer.ok else f"no: {peer.reason}"
        seconds = f"{peer.build_seconds:.0f} s" if peer.build_seconds is not None else ""
        commit = f"`{peer.commit}`" if peer.commit else ""
        lines.append(
            f"| {peer.name} | {peer.version} | {commit} | {peer.what} | {built} | {seconds} |"
        )
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
