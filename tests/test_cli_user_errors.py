"""The command line as a new user meets it: one clean line per mistake, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES, run_swapper

CONFIG = str(FIXTURES / "configs" / "webhook.yaml")


swapper = run_swapper


def one_clean_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("swapper: ")
    return lines[0]


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


@pytest.mark.parametrize(
    "args",
    [
        ("check-config", "/no/such/config.yaml"),
        ("explain", "--config", "/no/such/config.yaml", "nginx:1.27"),
        ("explain", "--config", CONFIG, "--pod", "/no/such/pod.yaml"),
        ("serve", "--config", "/no/such/config.yaml"),
        ("certs", "generate", "--ca-cert", "/no/such/ca.crt", "--ca-key", "/no/such/ca.key"),
    ],
    ids=["check-config", "explain-config", "explain-pod", "serve", "certs-generate"],
)
def test_a_missing_file_is_one_line_naming_it(args: tuple[str, ...]) -> None:
    assert "/no/such/" in one_clean_line(swapper(*args))


def test_bad_yaml_is_one_line(tmp_path: Path) -> None:
    line = one_clean_line(swapper("check-config", write(tmp_path, "bad.yaml", "a: [\n")))
    assert "not valid YAML" in line


def test_a_config_of_several_documents_is_one_line(tmp_path: Path) -> None:
    multi = write(tmp_path, "multi.yaml", "dryRun: true\n---\ndryRun: false\n")
    assert "single document" in one_clean_line(swapper("check-config", multi))


def test_a_bad_listen_address_is_one_line_naming_the_option() -> None:
    result = swapper(
        "serve",
        "--config",
        CONFIG,
        "--listen-address",
        "nonsense",
        "--tls-cert-file",
        "x",
        "--tls-key-file",
        "y",
    )
    assert "--listen-address" in one_clean_line(result)


def test_a_config_can_come_from_standard_input() -> None:
    result = swapper("explain", "--config", "-", "nginx:1.27", stdin=Path(CONFIG).read_text())
    assert result.returncode == 0, result.stderr
    assert "would swap nginx:1.27" in result.stdout


def test_explain_with_neither_images_nor_a_pod_is_one_line() -> None:
    assert "IMAGE" in one_clean_line(swapper("explain", "--config", CONFIG))


def test_an_unknown_manifest_kind_is_one_line_naming_the_kinds_explain_reads(
    tmp_path: Path,
) -> None:
    service = write(tmp_path, "svc.yaml", "kind: Service\nmetadata: {name: web}\n")
    line = one_clean_line(swapper("explain", "--config", CONFIG, "--pod", service))
    assert "'Service'" in line and "Deployment" in line


def test_the_version_is_the_packages() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    result = swapper("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"swapper {pyproject['project']['version']}"


COMMANDS = [
    ("serve",),
    ("check-config",),
    ("explain",),
    ("mirror",),
    ("certs", "generate"),
    ("certs", "bootstrap"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_option_has_help_and_shows_its_default(command: tuple[str, ...]) -> None:
    import argparse

    from swapper.cli import _HelpFormatter, _parser

    parser: argparse.ArgumentParser = _parser()
    for name in command:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    assert parser.formatter_class is _HelpFormatter
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        assert action.help, f"{command} {action.option_strings} has no help"
        shown = action.default not in (None, False, [], "", argparse.SUPPRESS)
        if shown and "%(default)" not in action.help:
            assert f"(default: {action.default})" in " ".join(text.split())


def test_explain_reads_the_pod_template_of_every_workload_kind(tmp_path: Path) -> None:
    import yaml

    template = {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}
    documents = [
        {"kind": kind, "metadata": {"name": kind.lower()}, "spec": {"template": template}}
        for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
    ]
    documents.append(
        {
            "kind": "CronJob",
            "metadata": {"name": "nightly"},
            "spec": {"jobTemplate": {"spec": {"template": template}}},
        }
    )
    manifests = write(tmp_path, "all.yaml", yaml.safe_dump_all(documents))
    result = swapper("explain", "--config", CONFIG, "--pod", manifests)
    assert result.returncode == 0, result.stderr
    titles = [line for line in result.stdout.splitlines() if line.startswith("# ")]
    assert titles == [
        "# Deployment deployment",
        "# StatefulSet statefulset",
        "# DaemonSet daemonset",
        "# ReplicaSet replicaset",
        "# Job job",
        "# CronJob nightly",
    ]
    assert result.stdout.count("containers[app]: would swap nginx:1.27") == 6


def test_explain_reads_manifests_from_standard_input() -> None:
    pod = "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: nginx:1.27}]}\n"
    result = swapper("explain", "--config", CONFIG, "--pod", "-", stdin=pod)
    assert result.returncode == 0, result.stderr
    assert "containers[c]: would swap nginx:1.27" in result.stdout


def test_explain_says_what_it_assumed_instead_of_asking(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "exists.yaml",
        "imageSwapPolicy: exists\nsource: {checkAccess: true}\n"
        "target: {type: generic, generic: {registry: mirror.example.com/m}}\n",
    )
    result = swapper("explain", "--config", config, "nginx:1.27")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2
    assert "imageSwapPolicy is exists" in notes[0]
    assert "not asked" in notes[1]


def test_certs_generate_again_keeps_the_ca_and_signs_a_new_serving_certificate(
    tmp_path: Path,
) -> None:
    from cryptography import x509

    out = str(tmp_path / "certs")
    assert swapper("certs", "generate", "--out", out).returncode == 0
    ca_before = (tmp_path / "certs" / "ca.crt").read_bytes()
    serving_before = (tmp_path / "certs" / "tls.crt").read_bytes()
    again = swapper("certs", "generate", "--out", out, "--san", "127.0.0.1")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "certs" / "ca.crt").read_bytes() == ca_before
    serving = (tmp_path / "certs" / "tls.crt").read_bytes()
    assert serving != serving_before
    ca = x509.load_pem_x509_certificate(ca_before)
    x509.load_pem_x509_certificate(serving).verify_directly_issued_by(ca)


def test_certs_generate_with_force_makes_a_new_ca(tmp_path: Path) -> None:
    out = str(tmp_path / "certs")
    assert swapper("certs", "generate", "--out", out).returncode == 0
    ca_before = (tmp_path / "certs" / "ca.crt").read_bytes()
    assert swapper("certs", "generate", "--out", out, "--force").returncode == 0
    assert (tmp_path / "certs" / "ca.crt").read_bytes() != ca_before


def _sigint_as_from_a_terminal() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_during_a_copy_prints_interrupted_and_exits_130() -> None:
    import signal
    import socket
    import time

    with socket.socket() as hanging:  # accepts connections, never answers
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(8)
        host = f"127.0.0.1:{hanging.getsockname()[1]}"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "swapper",
                "mirror",
                f"{host}/app:1",
                f"{host}/copy:1",
                "--insecure",
                host,
            ],
            stderr=subprocess.PIPE,
            text=True,
            # As a terminal starts it: SIGINT delivered and handled by default, whatever this
            # test process inherited (a SIGINT ignored or blocked here would be the child's too,
            # and Python installs its KeyboardInterrupt handler only over the default).
            preexec_fn=_sigint_as_from_a_terminal,
        )
        # Started, and waiting on the registry: its connection accepted (however long the
        # start-up took on a loaded machine), then a moment for the request to be sent.
        hanging.settimeout(60)
        connection, _ = hanging.accept()
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=20)
        finally:
            process.kill()
            connection.close()
    assert process.returncode == 130
    assert stderr.strip() == "swapper: interrupted"


def test_check_config_reads_standard_input() -> None:
    result = swapper("check-config", "-", stdin=Path(CONFIG).read_text())
    assert result.returncode == 0, result.stderr
    assert "imageSwapPolicy: always" in result.stdout
