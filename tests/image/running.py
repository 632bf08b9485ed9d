"""Commands run inside the image with ``buildah run --isolation chroot``, uid 65532."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from image import imagebuild

NONROOT = "65532:65532"


@dataclass(frozen=True)
class Image:
    name: str
    inspected: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.inspected["OCIv1"]["config"]  # type: ignore[no-any-return]


def run_command(
    container: str,
    command: Sequence[str],
    *,
    user: str = NONROOT,
    volumes: Sequence[str] = (),
) -> list[str]:
    """The ``buildah run`` command line for ``command`` inside ``container``.

    ``volumes``: bind mounts as ``HOST:INSIDE:ro`` (or ``:rw``)."""
    mounts = [arg for volume in volumes for arg in ("-v", volume)]
    return [
        *imagebuild.BUILDAH,
        "run",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--user",
        user,
        *mounts,
        container,
        "--",
        *command,
    ]


def run(
    container: str, *command: str, user: str = NONROOT, volumes: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        run_command(container, command, user=user, volumes=volumes),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group ``process`` leads (buildah run and what runs inside), then KILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
