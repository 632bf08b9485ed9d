from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FIXTURES

from swapper.config import (
    CopyPolicy,
    SwapPolicy,
    format_duration,
    load_config,
    load_config_file,
    parse_duration,
)
from swapper.errors import ConfigError

GENERIC = {"type": "generic", "generic": {"registry": "registry.local:5000"}}
AWS = {"type": "aws", "aws": {"accountId": "123456789012", "region": "eu-west-1"}}
# estahn/k8s-image-swapper's own sample, copied unchanged (tests/fixtures/README.md)
REFERENCE_SAMPLE = FIXTURES / "k8s-image-swapper" / "k8s-image-swapper.yml"


def problems(data: object) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(data)
    return dict(info.value.problems)


def test_defaults_match_the_reference_project() -> None:
    config = load_config({"target": AWS})
    assert config.image_swap_policy is SwapPolicy.EXISTS
    assert config.image_copy_policy is CopyPolicy.DELAYED
    assert config.image_copy_deadline == 8.0
    assert config.dry_run is False
    assert config.target.pull_secret.name == "swapper-pull-secret"


def test_a_k8s_image_swapper_config_file_is_accepted_as_is(fixtures_dir: Path) -> None:
    config = load_config_file(fixtures_dir / "configs" / "k8s-image-swapper.yaml")
    assert config.dry_run is True
    assert config.log_format == "console"
    assert config.image_copy_policy is CopyPolicy.IMMEDIATE
    assert config.image_copy_deadline == 5.0
    assert len(config.source.filters) == 2
    assert config.source.registries[0].aws is not None
    aws = config.target.aws
    assert aws is not None
    assert aws.ecr_options.tags[0].key == "cluster"
    assert aws.ecr_options.encryption_configuration.encryption_type == "KMS"
    assert config.target.endpoint == "123456789012.dkr.ecr.ap-southeast-2.amazonaws.com"


def test_a_misspelled_key_is_named_with_a_suggestion() -> None:
    found = problems({"imageSwapPolicyy": "always", "target": AWS})
    assert found == {"imageSwapPolicyy": "unknown key (did you mean 'imageSwapPolicy'?)"}


def test_an_unknown_nested_key_is_named_by_its_full_path() -> None:
    target = {"type": "aws", "aws": {**AWS["aws"], "ecrOptions": {"imageScanOnPush": True}}}
    found = problems({"target": target})
    assert "target.aws.ecrOptions.imageScanOnPush" in found


def test_a_bad_policy_value_is_refused() -> None:
    found = problems({"imageCopyPolicy": "later", "target": AWS})
    assert "imageCopyPolicy" in found
    assert "delayed" in found["imageCopyPolicy"]


def test_a_filter_that_does_not_compile_is_named_by_index() -> None:
    found = problems(
        {
            "source": {"filters": [{"jmespath": "obj.a == 'b'"}, {"jmespath": "obj.(("}]},
            "target": AWS,
        }
    )
    assert list(found) == ["source.filters[1].jmespath"]
    assert found["source.filters[1].jmespath"].startswith("does not compile")


def test_kms_encryption_without_a_key_is_refused() -> None:
    aws = {**AWS["aws"], "ecrOptions": {"encryptionConfiguration": {"encryptionType": "KMS"}}}
    found = problems({"target": {"type": "aws", "aws": aws}})
    assert (
        found["target.aws.ecrOptions.encryptionConfiguration"] == "encryptionType KMS needs kmsKey"
    )


def test_a_target_type_without_its_section_is_refused() -> None:
    found = problems({"target": {"type": "gcp"}})
    assert "target.type is 'gcp' but target.gcp is missing" in found["target"]


def test_a_non_json_access_policy_is_refused() -> None:
    aws = {**AWS["aws"], "ecrOptions": {"accessPolicy": "{not json"}}
    assert "target.aws.ecrOptions.accessPolicy" in problems({"target": {"type": "aws", "aws": aws}})


def test_an_account_id_given_as_a_number_is_accepted() -> None:
    config = load_config(
        {"target": {"type": "aws", "aws": {"accountId": 123456789012, "region": "us-east-1"}}}
    )
    assert config.target.aws is not None and config.target.aws.account_id == "123456789012"


def test_china_regions_use_the_amazonaws_com_cn_domain() -> None:
    config = load_config(
        {"target": {"type": "aws", "aws": {"accountId": "123456789012", "region": "cn-north-1"}}}
    )
    assert config.target.endpoint == "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"


def test_gcp_endpoint_includes_project_and_repository() -> None:
    gcp = {
        "location": "europe-west1",
        "projectId": "proj",
        "repositoryId": "mirror",
        "prefix": "k8s",
    }
    config = load_config({"target": {"type": "gcp", "gcp": gcp}})
    assert config.target.endpoint == "europe-west1-docker.pkg.dev/proj/mirror/k8s"


def test_a_generic_registry_is_normalised() -> None:
    found = problems(
        {"target": {"type": "generic", "generic": {"registry": "reg.local:5000/Mirror"}}}
    )
    assert "target.generic.registry" in found
    config = load_config(
        {"target": {"type": "generic", "generic": {"registry": "https://Reg.Local:5000/mirror/"}}}
    )
    assert config.target.endpoint == "reg.local:5000/mirror"


def test_a_copy_deadline_beyond_the_admission_timeout_is_refused() -> None:
    found = problems({"imageCopyDeadline": "12s", "admissionTimeout": "10s", "target": GENERIC})
    assert "must be less than admissionTimeout" in found["(top level)"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("8s", 8.0), ("1m30s", 90.0), ("500ms", 0.5), ("1.5s", 1.5), (3, 3.0), ("2h", 7200.0)],
)
def test_go_durations_are_understood(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "8", "8 s", "s", "1x", True])
def test_malformed_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_file_that_is_not_yaml_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("target: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert str(path) in str(info.value)
    assert "not valid YAML" in str(info.value)


def test_a_missing_file_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "absent.yaml")


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {"logLevel": "loud", "logFormat": "xml", "dryRun": "perhaps", "target": GENERIC}
    )
    assert set(found) == {"logLevel", "logFormat", "dryRun"}


def test_the_effective_config_uses_the_yaml_keys() -> None:
    effective = load_config({"target": GENERIC}).effective()
    assert effective["imageSwapPolicy"] == "exists"
    assert effective["target"]["generic"]["registry"] == "registry.local:5000"
    assert effective["target"]["pullSecret"] == {
        "enabled": False,
        "name": "swapper-pull-secret",
        "cleanup": False,
    }


def test_a_generic_registry_host_that_would_read_as_docker_hub_is_refused() -> None:
    found = problems({"target": {"type": "generic", "generic": {"registry": "registry/mirror"}}})
    assert "would read as Docker Hub names" in found["target.generic.registry"]
    assert load_config({"target": {"type": "generic", "generic": {"registry": "registry:5000"}}})


def test_mirror_settings_default_to_every_platform_and_four_workers() -> None:
    mirror = load_config({"target": GENERIC}).mirror
    assert (mirror.platforms, mirror.workers, mirror.max_queued) == ((), 4, 1000)
    assert (mirror.fresh_for, mirror.recheck_every) == (3600.0, 60.0)


@pytest.mark.parametrize(
    "platforms", ["linux/amd64,linux/arm64/v8", ["linux/amd64", "linux/arm64/v8"]]
)
def test_platforms_are_read_from_a_list_or_a_comma_separated_string(platforms: object) -> None:
    config = load_config({"target": GENERIC, "mirror": {"platforms": platforms}})
    assert config.mirror.platforms == ("linux/amd64", "linux/arm64/v8")


def test_a_malformed_platform_is_refused_with_its_key() -> None:
    found = problems({"target": GENERIC, "mirror": {"platforms": ["amd64"]}})
    assert "mirror.platforms" in found
    assert "OS/ARCH" in found["mirror.platforms"]


def test_a_copy_queue_without_workers_is_refused() -> None:
    assert "mirror.workers" in problems({"target": GENERIC, "mirror": {"workers": 0}})


def test_private_image_protection_is_on_by_default() -> None:
    source = load_config({"target": GENERIC}).source
    assert source.check_access is True
    assert source.pod_pull_secrets is True


def test_registries_with_operator_credentials_are_shared_with_every_pod() -> None:
    source = {
        "registries": [
            {"type": "generic", "generic": {"genericOptions": {"domain": "Reg.Example.com"}}},
            {"type": "aws", "aws": {"accountId": "123456789012", "region": "eu-west-1"}},
        ]
    }
    config = load_config({"target": GENERIC, "source": source})
    assert config.source.shared_domains == {
        "reg.example.com",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    }


def test_the_reference_projects_own_sample_config_loads_with_a_warning_for_its_kms_key() -> None:
    config = load_config_file(REFERENCE_SAMPLE)
    aws = config.target.aws
    assert aws is not None
    assert aws.ecr_options.encryption_configuration.encryption_type == "AES256"
    assert config.warnings == (
        (
            "target.aws.ecrOptions.encryptionConfiguration.kmsKey",
            "ignored: only used with encryptionType KMS (encryptionType is AES256)",
        ),
    )


def test_a_kms_key_next_to_aes256_encryption_is_a_warning_not_a_refusal() -> None:
    encryption = {"encryptionType": "AES256", "kmsKey": "arn:aws:kms:eu-west-1:1:key/x"}
    aws = {**AWS["aws"], "ecrOptions": {"encryptionConfiguration": encryption}}
    config = load_config({"target": {"type": "aws", "aws": aws}})
    assert [key for key, _ in config.warnings] == [
        "target.aws.ecrOptions.encryptionConfiguration.kmsKey"
    ]


def test_a_config_without_ignored_settings_has_no_warnings() -> None:
    assert load_config({"target": AWS}).warnings == ()


def test_a_section_for_a_target_type_not_chosen_is_a_warning() -> None:
    config = load_config({"target": {**GENERIC, "aws": AWS["aws"]}})
    assert config.warnings == (("target.aws", "ignored: target.type is 'generic'"),)


def test_target_only_keys_under_a_source_registry_are_warnings() -> None:
    aws = {**AWS["aws"], "prefix": "m", "ecrOptions": {"imageTagMutability": "IMMUTABLE"}}
    config = load_config(
        {"target": GENERIC, "source": {"registries": [{"type": "aws", "aws": aws}]}}
    )
    assert [key for key, _ in config.warnings] == [
        "source.registries[0].aws.prefix",
        "source.registries[0].aws.ecrOptions",
    ]


def test_warnings_are_kept_when_command_line_overrides_are_applied() -> None:
    config = load_config({"target": {**GENERIC, "aws": AWS["aws"]}})
    assert config.with_overrides(dry_run=True).warnings == config.warnings


@pytest.mark.parametrize("deadline", [0, "0s", "0ms"])
def test_a_zero_copy_deadline_means_the_default_of_eight_seconds(deadline: object) -> None:
    config = load_config({"imageCopyDeadline": deadline, "target": GENERIC})
    assert config.image_copy_deadline == 8.0


def test_a_zero_admission_timeout_is_still_refused() -> None:
    assert "admissionTimeout" in problems({"admissionTimeout": 0, "target": GENERIC})


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "start_with(container.image, 'quay.io/')",
            "calls unknown function 'start_with' (did you mean 'starts_with'?)",
        ),
        ("nosuchfn(obj)", "calls unknown function 'nosuchfn'"),
        ("obj.a == 'b' || contains(keys(obj), nosuchfn(obj))", "calls unknown function 'nosuchfn'"),
    ],
)
def test_a_filter_calling_an_unknown_function_is_refused_naming_the_key_and_function(
    expression: str, message: str
) -> None:
    found = problems(
        {
            "source": {"filters": [{"jmespath": "obj.a == 'b'"}, {"jmespath": expression}]},
            "target": GENERIC,
        }
    )
    assert found == {"source.filters[1].jmespath": message}


def test_a_filter_calling_a_function_with_the_wrong_number_of_arguments_is_refused() -> None:
    found = problems(
        {"source": {"filters": [{"jmespath": "starts_with(container.image)"}]}, "target": GENERIC}
    )
    assert found == {
        "source.filters[0].jmespath": "calls starts_with() with 1 argument; it takes 2"
    }


@pytest.mark.parametrize(
    "expression",
    [
        "regex_match('^ghcr\\.io/', container.image)",
        "lower(container.name) == 'app'",
        "not_null(container.a, container.b, container.c) == 'x'",
        "ends_with(obj.metadata.namespace, '-dev')",
    ],
)
def test_filters_calling_known_functions_are_accepted(expression: str) -> None:
    config = load_config({"source": {"filters": [{"jmespath": expression}]}, "target": GENERIC})
    assert config.source.filters[0].jmespath == expression


def test_a_generic_target_reaches_its_registry_as_mirror_hosts_says() -> None:
    config = load_config(
        {
            "target": {"type": "generic", "generic": {"registry": "Reg.Local:5000/m"}},
            "mirror": {"hosts": {"reg.local:5000": {"insecure": True, "skipVerify": True}}},
        }
    )
    assert config.target.generic is not None
    connection = config.target.generic.connection()
    assert (connection.insecure, connection.skip_verify) == (True, True)


def test_a_generic_targets_own_tls_settings_still_apply_without_mirror_hosts() -> None:
    generic = {"registry": "reg.local:5000", "insecure": True, "caFile": "/ca.pem"}
    config = load_config({"target": {"type": "generic", "generic": generic}})
    assert config.target.generic is not None
    connection = config.target.generic.connection()
    assert (connection.insecure, connection.ca_file) == (True, "/ca.pem")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(8.0, "8s"), (3600.0, "1h"), (90.0, "1m30s"), (0.5, "500ms"), (1.5, "1.5s"), (5400, "1h30m")],
)
def test_durations_are_written_as_the_shortest_go_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
