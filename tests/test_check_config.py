"""``swapper check-config``: the effective config in the file's own terms, and the settings that do
nothing, run as a user runs it (``python -m swapper check-config FILE`` in a subprocess). And the
same warnings logged when ``swapper serve`` builds its backends."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import orjson
import yaml
from helpers import FIXTURES, run_swapper

from swapper import logs
from swapper.config import load_config
from swapper.metrics import Metrics
from swapper.targets.memory import MemoryTarget
from swapper.wiring import build_backends

# estahn/k8s-image-swapper's own sample, copied unchanged (tests/fixtures/README.md)
REFERENCE_SAMPLE = FIXTURES / "k8s-image-swapper" / "k8s-image-swapper.yml"
SECRET = "s3cr3t-Pa55word"
GENERIC_TARGET = {"type": "generic", "generic": {"registry": "registry.local:5000"}}


def check_config(tmp_path: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_swapper("check-config", str(path))


def effective(tmp_path: Path, config: dict[str, Any]) -> dict[str, Any]:
    result = check_config(tmp_path, config)
    assert result.returncode == 0, result.stderr
    printed: dict[str, Any] = yaml.safe_load(result.stdout)
    return printed


def generic_source(password: str = SECRET) -> dict[str, Any]:
    options = {"domain": "private.example.com", "username": "robot", "password": password}
    return {"registries": [{"type": "generic", "generic": {"genericOptions": options}}]}


def test_check_config_prints_durations_as_go_durations(tmp_path: Path) -> None:
    printed = effective(tmp_path, {"target": GENERIC_TARGET, "mirror": {"recheckEvery": 90}})
    assert (printed["imageCopyDeadline"], printed["admissionTimeout"]) == ("8s", "9s")
    assert (printed["mirror"]["freshFor"], printed["mirror"]["recheckEvery"]) == ("1h", "1m30s")
    assert printed["target"]["existenceCache"] == {"ttl": "1m", "negativeTtl": "5s"}


def test_check_config_prints_a_zero_copy_deadline_as_the_default(tmp_path: Path) -> None:
    printed = effective(tmp_path, {"target": GENERIC_TARGET, "imageCopyDeadline": 0})
    assert printed["imageCopyDeadline"] == "8s"


def test_check_config_never_prints_a_source_registry_password(tmp_path: Path) -> None:
    result = check_config(tmp_path, {"target": GENERIC_TARGET, "source": generic_source()})
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    [registry] = yaml.safe_load(result.stdout)["source"]["registries"]
    assert registry["generic"]["genericOptions"] == {
        "domain": "private.example.com",
        "username": "robot",
        "password": "<redacted>",
    }


def test_check_config_prints_a_mirror_host_whose_name_holds_token_as_it_is(
    tmp_path: Path,
) -> None:
    mirror = {"hosts": {"token.example.com": {"insecure": True}}}
    printed = effective(tmp_path, {"target": GENERIC_TARGET, "mirror": mirror})
    assert printed["mirror"]["hosts"] == {
        "token.example.com": {"insecure": True, "skipVerify": False, "caFile": ""}
    }


def test_check_config_prints_only_the_section_of_a_source_registrys_type(
    tmp_path: Path,
) -> None:
    [registry] = effective(tmp_path, {"target": GENERIC_TARGET, "source": generic_source()})[
        "source"
    ]["registries"]
    assert set(registry) == {"type", "generic"}


def test_check_config_prints_no_target_only_keys_under_an_aws_source_registry(
    tmp_path: Path,
) -> None:
    aws = {"accountId": "123456789012", "region": "eu-west-1"}
    source = {"registries": [{"type": "aws", "aws": aws}], "privateRegistries": [{"aws": aws}]}
    printed = effective(tmp_path, {"target": GENERIC_TARGET, "source": source})["source"]
    for registry in (printed["registries"][0], printed["privateRegistries"][0]):
        assert "ecrOptions" not in registry["aws"]
        assert "prefix" not in registry["aws"]
        assert registry["aws"]["accountId"] == "123456789012"


def test_check_config_prints_only_the_target_section_of_the_chosen_type(tmp_path: Path) -> None:
    aws = {"accountId": "123456789012", "region": "eu-west-1"}
    printed = effective(tmp_path, {"target": {**GENERIC_TARGET, "aws": aws}})
    assert "aws" not in printed["target"]
    assert printed["target"]["generic"]["registry"] == "registry.local:5000"


def test_check_config_of_the_reference_sample_warns_about_its_kms_key_on_one_stderr_line() -> None:
    result = run_swapper("check-config", str(REFERENCE_SAMPLE))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "swapper: warning: target.aws.ecrOptions.encryptionConfiguration.kmsKey: ignored: only "
        "used with encryptionType KMS (encryptionType is AES256)"
    ]
    encryption = yaml.safe_load(result.stdout)["target"]["aws"]["ecrOptions"][
        "encryptionConfiguration"
    ]
    assert encryption == {"encryptionType": "AES256"}


def test_check_config_prints_a_config_that_loads_back_to_the_same_settings() -> None:
    result = run_swapper("check-config", str(REFERENCE_SAMPLE))
    assert result.returncode == 0, result.stderr
    again = load_config(yaml.safe_load(result.stdout))
    assert again.warnings == ()
    assert yaml.safe_load(result.stdout) == again.effective()


def test_serve_logs_each_ignored_setting_when_it_builds_its_backends() -> None:
    aws = {"accountId": "123456789012", "region": "eu-west-1"}
    config = load_config(
        {
            "target": {**GENERIC_TARGET, "aws": aws},
            "source": {"podPullSecrets": False},
        }
    )
    out = io.BytesIO()
    logs.configure("info", "json", stream=out)
    try:
        build_backends(config, MemoryTarget(config.target.endpoint), Metrics())
        logs.flush()
    finally:
        logs.configure("info", "json", stream=io.BytesIO())
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    ignored = [line for line in lines if line["event"] == "config_setting_ignored"]
    assert [(line["level"], line["key"], line["problem"]) for line in ignored] == [
        ("warning", "target.aws", "ignored: target.type is 'generic'")
    ]
