"""Build the supply-chain tools the referrer tests run: cosign, a registry with the referrers API,
and the oras CLI.

Each is built with Go at a pinned release, once, into a cache outside the work tree
(``$SWAPPER_E2E_CACHE``, default ``~/.cache/swapper-e2e``, under ``supply/<name>-<version>``),
keyed by version: a second call finds it and returns at once. No code of these projects is
committed here:

- ``cosign`` (sigstore): ``go install github.com/sigstore/cosign/v2/cmd/cosign@<version>``;
- the referrers registry: go-containerregistry's ``pkg/registry`` serves the OCI 1.1 referrers
  API when told to (``registry.WithReferrersSupport(true)``); a few lines of Go ``main``
  generated in the cache serve it on ``127.0.0.1:<port>`` given on the command line (Debian's
  ``docker-registry`` does not serve that API: it is the registry of the tag fallback);
  ``--no-referrers`` turns the API off, for a lenient registry that stores malformed indexes
  (the bad-input tests); the cache key carries a revision of that generated ``main``;
- ``oras`` (the ORAS CLI), to attach an artifact as a referrer the way users do.

Usage: ``python tests/supply/tools.py`` builds what is missing and prints the paths; ``--list``
prints the pinned versions. Standard library only, so it runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

GO = os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"


@dataclass(frozen=True)
class Tool:
    name: str
    version: str
    module: str  # the Go module the version pins
    package: str  # what ``go install`` builds (empty: a generated main, see _build_registry)
    binary: str  # the executable's name
    revision: str = ""  # of what is generated around the module (a change builds anew)


COSIGN = Tool(
    "cosign",
    "v2.6.5",
    "github.com/sigstore/cosign/v2",
    "github.com/sigstore/cosign/v2/cmd/cosign",
    "cosign",
)
REGISTRY = Tool(
    "referrers-registry",
    "v0.22.1",
    "github.com/google/go-containerregistry",
    "",
    "referrers-registry",
    "r3",
)
ORAS = Tool("oras", "v1.3.6", "oras.land/oras", "oras.land/oras/cmd/oras", "oras")
TOOLS = (COSIGN, REGISTRY, ORAS)

#: Go build cuts: a cosign build takes several minutes on a loaded 2-core machine.
BUILD_TIMEOUT = 3600


class BuildFailed(RuntimeError):
    """A tool could not be built; the message says which, and what Go printed last."""


def cache_root() -> Path:
    configured = os.environ.get("SWAPPER_E2E_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "swapper-e2e"


def path_of(tool: Tool) -> Path:
    return cache_root() / "supply" / _key(tool) / tool.binary


def _key(tool: Tool) -> str:
    return f"{tool.name}-{tool.version}" + (f"-{tool.revision}" if tool.revision else "")


def _tail(text: str, lines: int = 6) -> str:
    kept = [line.rstrip() for line in text.strip().splitlines() if line.strip()][-lines:]
    # No download host in what is printed: addresses become <url>.
    return re.sub(r"\w+://\S+", "<url>", "\n".join(kept)) or "no output"


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
        GOWORK="off",
        GOFLAGS="-modcacherw -buildvcs=false",
        # Shared with tests/e2e/binaries.py: the module downloads stay in this cache.
        GOMODCACHE=str(cache_root() / "gomodcache"),
    )
    env.setdefault("GOPATH", str(cache_root() / "gopath"))
    env["PATH"] = f"{Path(GO).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _go(tool: Tool, args: list[str], cwd: Path, env: dict[str, str]) -> None:
    try:
        done = subprocess.run(
            [GO, *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildFailed(
            f"building {tool.name} {tool.version}: go {args[0]} did not finish in {BUILD_TIMEOUT} s"
        ) from exc
    except OSError as exc:
        raise BuildFailed(f"building {tool.name} {tool.version}: no Go toolchain ({exc})") from exc
    if done.returncode != 0:
        raise BuildFailed(
            f"building {tool.name} {tool.version}: go {' '.join(args)} failed:\n"
            f"{_tail(done.stderr)}"
        )


def _install(built: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_suffix(".partial")
    shutil.copy2(built, partial)
    partial.chmod(0o755)
    partial.replace(final)


def _build_go_install(tool: Tool) -> Path:
    final = path_of(tool)
    work = cache_root() / "build" / _key(tool)
    work.mkdir(parents=True, exist_ok=True)
    env = _go_env()
    env["GOBIN"] = str(work / "bin")
    flags = ["-trimpath", "-ldflags", "-s -w"]
    _go(tool, ["install", *flags, f"{tool.package}@{tool.version}"], work, env)
    _install(work / "bin" / tool.binary, final)
    return final


#: The referrers registry: go-containerregistry's in-memory registry with the referrers API on,
#: on the address given as its first argument; ``--no-referrers``: with the API off (it answers
#: 404 there, and stores what it is given with little checking: the bad-input tests' registry).
REGISTRY_MAIN = """\
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	api := len(os.Args) == 2
	if !api && (len(os.Args) != 3 || os.Args[2] != "--no-referrers") {
		fmt.Fprintln(os.Stderr, "usage: referrers-registry 127.0.0.1:PORT [--no-referrers]")
		os.Exit(2)
	}
	listener, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	handler := registry.New(
		registry.WithReferrersSupport(api),
		registry.Logger(log.New(os.Stderr, "", log.LstdFlags)),
	)
	server := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second}
	log.Fatal(server.Serve(listener))
}
"""


def _build_registry(tool: Tool) -> Path:
    final = path_of(tool)
    work = cache_root() / "build" / _key(tool)
    work.mkdir(parents=True, exist_ok=True)
    env = _go_env()
    (work / "go.mod").write_text(f"module swapper-e2e/{tool.name}\n\ngo 1.21\n")
    (work / "main.go").write_text(REGISTRY_MAIN)
    _go(tool, ["get", f"{tool.module}@{tool.version}"], work, env)
    _go(tool, ["mod", "tidy"], work, env)
    out = work / tool.binary
    _go(tool, ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."], work, env)
    _install(out, final)
    return final


def ensure(tool: Tool) -> Path:
    """The path of ``tool``, built when missing (:class:`BuildFailed` when it cannot be)."""
    final = path_of(tool)
    if final.exists():
        return final
    if tool is REGISTRY:
        return _build_registry(tool)
    return _build_go_install(tool)


def cosign() -> Path:
    return ensure(COSIGN)


def referrers_registry() -> Path:
    return ensure(REGISTRY)


def oras() -> Path:
    return ensure(ORAS)


@dataclass
class RunningRegistry:
    """A referrers registry serving on loopback; its request log is :attr:`log`."""

    host: str  # "127.0.0.1:PORT"
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def requests(self, method: str, path_start: str = "/v2/") -> int:
        """How many ``method`` requests to paths starting with ``path_start`` it has logged."""
        needle = f" {method} {path_start}"
        return sum(needle in line for line in self.log.read_text(errors="replace").splitlines())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_referrers_registry(
    workdir: Path, *, referrers_api: bool = True
) -> Iterator[RunningRegistry]:
    """The referrers registry (built when missing) on a free loopback port, stopped on exit.
    It keeps everything in memory; its log, one line per request, goes to ``workdir``.
    ``referrers_api``: False turns the API off (a lenient registry for bad input)."""
    binary = referrers_registry()
    port = _free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"referrers-registry-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), f"127.0.0.1:{port}", *([] if referrers_api else ["--no-referrers"])],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        running = RunningRegistry(f"127.0.0.1:{port}", process, log_path)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    with urllib.request.urlopen(f"{running.url}/v2/", timeout=1) as answer:
                        if answer.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the referrers registry did not start: {log_path.read_text()[-2000:]}"
                    )
                time.sleep(0.05)
            yield running
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the pinned versions and exit")
    parser.add_argument(
        "tools",
        nargs="*",
        default=[t.name for t in TOOLS],
        help=f"which to build (default all: {' '.join(t.name for t in TOOLS)})",
    )
    args = parser.parse_args()
    if args.list:
        for tool in TOOLS:
            print(f"{tool.name} {tool.version}")
        return 0
    by_name = {t.name: t for t in TOOLS}
    failed = 0
    for name in args.tools:
        tool = by_name.get(name)
        if tool is None:
            parser.error(f"unknown tool {name!r}")
        start = time.monotonic()
        cached = path_of(tool).exists()
        try:
            path = ensure(tool)
        except BuildFailed as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        state = "cached" if cached else f"built in {time.monotonic() - start:.0f} s"
        print(f"{tool.name} {tool.version}: {path} ({state})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
