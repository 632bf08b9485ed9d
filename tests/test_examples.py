"""The files in examples/ that the README's "By hand" section uses do what it says."""

from __future__ import annotations

import re
import subprocess

from helpers import REPO, run_swapper

EXAMPLES = REPO / "examples"
MIRROR = "registry.internal.example.org/mirror"


def swapper(*args: str) -> subprocess.CompletedProcess[str]:
    return run_swapper(*args, cwd=REPO)


def decisions(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if not line.startswith("note: ")]


def test_the_example_config_is_valid_and_starts_in_audit_mode() -> None:
    result = swapper("check-config", "examples/config.yaml")
    assert result.returncode == 0, result.stderr
    assert "dryRun: true" in result.stdout.splitlines()


def test_the_example_pod_is_explained_container_by_container() -> None:
    lines = decisions(
        swapper("explain", "--config", "examples/config.yaml", "--pod", "examples/pod.yaml")
    )
    digest = "sha256:" + "0123456789abcdef" * 4
    assert lines == [
        f"initContainers[migrate]: would swap ghcr.io/acme/migrate:2.1 -> "
        f"{MIRROR}/ghcr.io/acme/migrate:2.1",
        f"containers[web]: would swap nginx:1.27 -> {MIRROR}/docker.io/library/nginx:1.27",
        f"containers[api]: would swap ghcr.io/acme/api:1.4@{digest} -> "
        f"{MIRROR}/ghcr.io/acme/api:1.4@{digest}",
    ]


def test_the_example_workloads_are_explained_through_their_pod_templates() -> None:
    lines = decisions(
        swapper("explain", "--config", "examples/config.yaml", "--pod", "examples/deployment.yaml")
    )
    assert lines == [
        "# Deployment shop",
        f"containers[shop]: would swap redis:7.2 -> {MIRROR}/docker.io/library/redis:7.2",
        "# DaemonSet node-agent",
        "containers[agent]: skipped by filter 0 (obj.metadata.namespace == 'kube-system')",
    ]


def test_every_example_file_the_readme_names_exists_and_every_example_is_named() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"examples/([\w.-]+\.yaml)", readme))
    assert named == {p.name for p in EXAMPLES.glob("*.yaml")}
