"""``swapper mirror`` over TLS, as a user runs it: a subprocess reading a private registry
through its CA bundle (``--ca-file``, loaded while the command still starts up)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from helpers import run_swapper
from registries import (
    Registry,
    assert_same_image,
    make_image,
    make_layer,
    push_image,
)


def swapper(*args: str) -> subprocess.CompletedProcess[str]:
    # Buffered output, as a user's shell gives it: the command ends with os._exit, which must
    # come after its summary is written out.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return run_swapper(*args, env=env)


def test_a_tls_source_is_read_through_the_ca_file_and_a_second_run_finds_it_present(
    tls_registry: Registry, target: Registry, fresh_repo: str, tmp_path: Path
) -> None:
    image = make_image([make_layer("cli-tls-1"), make_layer("cli-tls-2")])
    push_image(tls_registry, "cli/app", image, "3")
    authfile = tmp_path / "auth.json"
    authfile.write_text(
        json.dumps(
            {"auths": {tls_registry.host: {"username": "carol", "password": "carol-secret"}}}
        )
    )
    command = [
        "mirror",
        f"{tls_registry.host}/cli/app:3",
        f"{target.host}/{fresh_repo}:3",
        "--ca-file",
        str(tls_registry.ca_file),
        "--insecure",
        target.host,
        "--authfile",
        str(authfile),
    ]

    first = swapper(*command)
    again = swapper(*command)

    assert first.returncode == 0, first.stderr
    assert f"digest {image.digest}" in first.stdout and "already present" not in first.stdout
    assert again.returncode == 0, again.stderr
    assert "(already present)" in again.stdout
    assert_same_image(tls_registry, "cli/app", target, fresh_repo, "3", image.digest)


def test_without_the_ca_file_the_tls_source_is_refused_with_reason_tls(
    tls_registry: Registry, target: Registry, fresh_repo: str
) -> None:
    result = swapper(
        "mirror",
        f"{tls_registry.host}/cli/app:3",
        f"{target.host}/{fresh_repo}:3",
        "--insecure",
        target.host,
    )

    assert result.returncode == 1
    assert "copy failed (tls)" in result.stderr


def test_a_ca_file_that_cannot_be_read_is_a_usage_error(
    target: Registry, fresh_repo: str, tmp_path: Path
) -> None:
    result = swapper(
        "mirror",
        "registry.example:5000/app:1",
        f"{target.host}/{fresh_repo}:1",
        "--ca-file",
        str(tmp_path / "missing.pem"),
    )

    assert result.returncode == 2
    assert "--ca-file" in result.stderr and "missing.pem" in result.stderr


def test_tls_against_a_plain_http_registry_suggests_the_insecure_flag(
    source: Registry, target: Registry, fresh_repo: str
) -> None:
    push_image(source, "cli/plain", make_image([make_layer("cli-plain")]), "1")
    result = swapper(
        "mirror", f"{source.host}/cli/plain:1", f"{target.host}/{fresh_repo}:1"
    )  # both registries speak plain HTTP; no --insecure given

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error, hint = result.stderr.strip().splitlines()[-2:]
    named = next(h for h in (target.host, source.host) if h in error)  # the one that failed
    assert hint == f"swapper: if {named} is a plain-HTTP registry, add --insecure {named}"


def test_insecure_takes_a_comma_separated_list(
    source: Registry, target: Registry, fresh_repo: str
) -> None:
    push_image(source, "cli/comma", make_image([make_layer("cli-comma")]), "1")
    result = swapper(
        "mirror",
        f"{source.host}/cli/comma:1",
        f"{target.host}/{fresh_repo}:1",
        "--insecure",
        f"{source.host},{target.host}",
    )

    assert result.returncode == 0, result.stderr
    assert_same_image(source, "cli/comma", target, fresh_repo, "1")
