"""``swapper mirror`` as a user runs it: a subprocess copying between real registries."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_swapper
from moto_ecr import ACCOUNT, REGION, running_moto
from registries import (
    Registry,
    TokenServer,
    get_manifest,
    make_image,
    make_layer,
    multi_arch,
    push_image,
    push_index,
    start_registry,
)


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Registry]]:
    tmp = tmp_path_factory.mktemp("mirror-command")
    tokens = TokenServer(tmp / "tokens", users={"alice": "alice-secret"}, public=("public/",))
    tokens.start()
    source = start_registry(tmp / "source", token_server=tokens)
    target = start_registry(tmp / "target")
    push_image(source, "private/app", make_image([make_layer("cli")]), "2.0")
    push_index(source, "public/multi", multi_arch("cli-multi", layers=2), "1.0")
    yield source, target
    target.stop()
    source.stop()
    tokens.stop()


def insecure(*registries: Registry) -> list[str]:
    return [arg for r in registries for arg in ("--insecure", r.host)]


swapper = run_swapper


def test_an_image_is_copied_with_credentials_from_an_authfile(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    source, target = registries
    authfile = tmp_path / "auth.json"
    authfile.write_text(
        json.dumps({"auths": {source.host: {"username": "alice", "password": "alice-secret"}}})
    )
    result = swapper(
        "mirror",
        f"{source.host}/private/app:2.0",
        f"{target.host}/copies/app:2.0",
        "--authfile",
        str(authfile),
        *insecure(source, target),
    )
    assert result.returncode == 0, result.stderr
    assert get_manifest(target, "copies/app", "2.0") == get_manifest(source, "private/app", "2.0")
    assert "alice-secret" not in result.stdout + result.stderr
    assert "digest sha256:" in result.stdout


def test_without_credentials_a_private_image_fails_with_its_reason(
    registries: tuple[Registry, Registry],
) -> None:
    source, target = registries
    result = swapper(
        "mirror",
        f"{source.host}/private/app:2.0",
        f"{target.host}/copies/denied:2.0",
        *insecure(source, target),
    )
    assert result.returncode == 1
    assert "copy failed (unauthorized)" in result.stderr
    assert get_manifest(target, "copies/denied", "2.0") is None


def test_one_platform_of_an_index_can_be_chosen(registries: tuple[Registry, Registry]) -> None:
    source, target = registries
    result = swapper(
        "mirror",
        f"{source.host}/public/multi:1.0",
        f"{target.host}/copies/multi:1.0",
        "--platform",
        "linux/arm64",
        *insecure(source, target),
    )
    assert result.returncode == 0, result.stderr
    assert "platforms linux/arm64" in result.stdout
    copied = get_manifest(target, "copies/multi", "1.0")
    assert copied is not None
    children = json.loads(copied[0])["manifests"]
    assert [m["platform"]["architecture"] for m in children] == ["arm64"]


def test_the_target_is_derived_from_a_config(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    source, target = registries
    config = tmp_path / "config.yaml"
    config.write_text(
        f"target:\n  type: generic\n  generic:\n    registry: {target.host}/m\n    insecure: true\n"
    )
    result = swapper(
        "mirror",
        f"{source.host}/public/multi:1.0",
        "--config",
        str(config),
        "--insecure",
        source.host,
    )
    assert result.returncode == 0, result.stderr
    repo = f"m/127.0.0.1_{source.host.split(':')[1]}/public/multi"
    assert get_manifest(target, repo, "1.0") == get_manifest(source, "public/multi", "1.0")


def tags_of(registry: Registry, repo: str) -> list[str]:
    with registry.client() as client:
        response = client.get(f"/v2/{repo}/tags/list")
        response.raise_for_status()
        return list(response.json().get("tags") or [])


@pytest.mark.parametrize("cleanup", [True, False])
def test_a_copy_into_the_configured_target_carries_this_clusters_usage_mark_when_cleanup_is_on(
    registries: tuple[Registry, Registry], tmp_path: Path, cleanup: bool
) -> None:
    source, target = registries
    prefix = f"marked-{cleanup}".lower()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"target:\n  type: generic\n  generic:\n    registry: {target.host}/{prefix}\n"
        f"    insecure: true\nclusterName: ops-eu\ncleanup:\n  enabled: {str(cleanup).lower()}\n"
    )
    result = swapper(
        "mirror", f"{source.host}/public/multi:1.0", "--config", str(config), *insecure(source)
    )
    assert result.returncode == 0, result.stderr
    repo = f"{prefix}/127.0.0.1_{source.host.split(':')[1]}/public/multi"
    copied = get_manifest(target, repo, "1.0")
    assert copied is not None
    digest = "sha256:" + hashlib.sha256(copied[0]).hexdigest()
    mark = f"swapper-used-ops-eu-{digest.removeprefix('sha256:')[:32]}"
    if not cleanup:
        assert sorted(tags_of(target, repo)) == ["1.0"]
        return
    assert sorted(tags_of(target, repo)) == sorted(["1.0", mark])
    body = get_manifest(target, repo, mark)
    assert body is not None
    annotations = json.loads(body[0])["annotations"]
    assert annotations["io.swapper.cluster"] == "ops-eu"
    assert annotations["io.swapper.image-digest"] == digest
    assert json.loads(body[0])["subject"]["digest"] == digest


def test_a_malformed_platform_is_refused_before_copying(
    registries: tuple[Registry, Registry],
) -> None:
    source, target = registries
    result = swapper(
        "mirror", f"{source.host}/public/multi:1.0", f"{target.host}/x:1", "--platform", "arm64"
    )
    assert result.returncode == 2
    assert "--platform" in result.stderr


def test_with_an_ecr_config_the_repository_is_created_and_the_push_uses_the_ecr_token(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    source, _ = registries
    mirror = start_registry(tmp_path / "ecr-data-plane", users={"AWS": f"{ACCOUNT}-auth-token"})
    try:
        with running_moto() as moto:
            moto.reset()  # moto's state outlives the server object: start from none
            config = tmp_path / "ecr.yaml"
            config.write_text(
                json.dumps(
                    {
                        "target": {
                            "type": "aws",
                            "aws": {
                                "accountId": ACCOUNT,
                                "region": REGION,
                                "endpointUrl": moto.url,
                                "registryHost": mirror.host,
                                "prefix": "mirror",
                            },
                        },
                        "mirror": {"hosts": {mirror.host: {"insecure": True}}},
                    }
                )
            )
            result = subprocess.run(
                [
                    *(sys.executable, "-m", "swapper", "mirror", f"{source.host}/public/multi:1.0"),
                    *("--config", str(config), "--insecure", source.host),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env={**os.environ, **moto.environment()},
            )
            assert result.returncode == 0, result.stderr
            repo = f"mirror/127.0.0.1_{source.host.split(':')[1]}/public/multi"
            names = [
                r["repositoryName"] for r in moto.client().describe_repositories()["repositories"]
            ]
            assert names == [repo]
        assert get_manifest(mirror, repo, "1.0") == get_manifest(source, "public/multi", "1.0")
    finally:
        mirror.stop()


def test_the_progress_line_names_the_image_and_shows_the_time_left() -> None:
    import io

    from swapper.mirror.command import Progress
    from swapper.oci import ProgressEvent

    progress = Progress(io.StringIO(), live=True, image="ghcr.io/acme/app:1.4")
    progress.started = 100.0
    mib = 1024 * 1024
    event = ProgressEvent(
        "blob-progress", "sha256:" + "a" * 64, 40 * mib, 10 * mib, 4, 1, 40 * mib, 10 * mib
    )
    line = progress.line(event, now=110.0)  # 10 MiB in 10 s, 30 MiB to go
    assert line.startswith("ghcr.io/acme/app:1.4  blobs 1/4")
    assert line.endswith("1.0 MiB/s  ETA 30s")


HEAVY = (
    "boto3",
    "botocore",
    "google",
    "grpc",
    "kubernetes",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "jmespath",
    "cryptography",
    "prometheus_client",
    "yaml",
    # and from the standard library: the installed version's metadata (with the email parser
    # and zip reader behind it), and shutil with its compression modules (argparse's help width)
    "importlib.metadata",
    "email",
    "zipfile",
    "shutil",
)
"""What a registry-to-registry copy has no use for: the cloud SDKs, the Kubernetes client, the
web server, config validation and the rest of ``swapper serve``'s stack; a package's name
stands for all its modules."""

_IMPORTS = """
import atexit, os, sys
heavy = {heavy!r}
def report():
    found = sorted({{h for h in heavy for name in sys.modules if (name + ".").startswith(h + ".")}})
    print("IMPORTED", ",".join(found), file=sys.stderr, flush=True)
atexit.register(report)  # --help leaves through SystemExit
leave = os._exit
def report_and_leave(code):  # a copy leaves through os._exit, past atexit
    report()
    leave(code)
os._exit = report_and_leave
sys.argv = ["swapper", *{argv!r}]
from swapper.cli import console
console()
"""


def imported_by(*argv: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The ``heavy`` modules a ``swapper`` command imported, read at its exit."""
    script = _IMPORTS.format(heavy=heavy, argv=list(argv))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    [line] = [line for line in done.stderr.splitlines() if line.startswith("IMPORTED")]
    return [name for name in line.removeprefix("IMPORTED").strip().split(",") if name]


def test_the_version_is_printed_on_stdout_when_asked() -> None:
    done = run_swapper("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("swapper ") and len(done.stdout.split()) == 2


def test_mirror_help_and_a_copy_import_no_cloud_sdk_kubernetes_or_web_stack(
    registries: tuple[Registry, Registry],
) -> None:
    source, target = registries
    # --help copies nothing: not even the event loop or TLS is loaded for it
    assert imported_by("mirror", "--help", heavy=(*HEAVY, "asyncio", "ssl")) == []
    copied = imported_by(
        "mirror",
        f"{source.host}/public/multi:1.0",
        f"{target.host}/imports/multi:1.0",
        *insecure(source, target),
    )
    assert copied == []
    assert get_manifest(target, "imports/multi", "1.0") is not None  # the copy did happen
