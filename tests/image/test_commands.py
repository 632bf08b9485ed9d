"""swapper's commands run inside the image as uid 65532."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from image.running import run


def test_swapper_help_runs_as_the_non_root_user(container: str) -> None:
    result = run(container, "swapper", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: swapper" in result.stdout
    assert run(container, "id", "-u").stdout.strip() == "65532"


def test_certs_generate_writes_a_serving_pair_as_the_non_root_user(
    container: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, 65532, 65532)
    result = run(
        container,
        *("swapper", "certs", "generate", "--service", "swapper", "--namespace", "swapper"),
        *("--out", "/out"),
        volumes=[f"{out}:/out:rw"],
    )
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} >= {"tls.crt", "tls.key", "ca.crt"}
    assert (out / "tls.key").stat().st_uid == 65532
    cert = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "swapper.swapper.svc" in names.get_values_for_type(x509.DNSName)
