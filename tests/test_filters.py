from __future__ import annotations

import pytest

from swapper.filters import Filters, scrub


def pod(namespace: str = "default") -> dict[str, object]:
    return {"metadata": {"name": "web", "namespace": namespace, "labels": {"team": "a"}}}


def test_no_filters_match_nothing() -> None:
    assert Filters([]).first_match(pod(), {"image": "nginx"}) is None


def test_a_true_filter_returns_its_index() -> None:
    filters = Filters(["obj.metadata.namespace == 'kube-system'", "container.name == 'sidecar'"])
    assert filters.first_match(pod(), {"name": "sidecar"}) == 1
    assert filters.first_match(pod("kube-system"), {"name": "sidecar"}) == 0
    assert filters.first_match(pod(), {"name": "app"}) is None


@pytest.mark.parametrize(
    ("expression", "container", "expected"),
    [
        ("starts_with(container.image, 'quay.io/')", {"image": "quay.io/x"}, 0),
        ("ends_with(obj.metadata.namespace, '-dev')", {"image": "x"}, None),
        ("contains(container.image, '.dkr.ecr.')", {"image": "1.dkr.ecr.x/y"}, 0),
        ("regex_match('^ghcr\\.io/', container.image)", {"image": "ghcr.io/a/b"}, 0),
        ("lower(container.name) == 'app'", {"name": "APP", "image": "x"}, 0),
    ],
)
def test_functions_users_expect_work(
    expression: str, container: dict[str, str], expected: int | None
) -> None:
    assert Filters([expression]).first_match(pod(), container) == expected


def test_a_filter_that_errors_at_run_time_counts_as_no_match() -> None:
    # starts_with on a number raises a JMESPath type error at evaluation time.
    filters = Filters(["starts_with(obj.metadata.labels.team, `1`)", "container.name == 'x'"])
    assert filters.first_match(pod(), {"name": "x"}) == 1


def test_a_filter_returning_a_non_boolean_counts_as_no_match() -> None:
    filters = Filters(["obj.metadata.namespace", "container.image"])
    assert filters.first_match(pod(), {"image": "nginx"}) is None


def test_a_truthy_non_boolean_is_not_a_match() -> None:
    assert Filters(["`1`"]).first_match(pod(), {}) is None


def test_logged_contexts_hide_literal_env_values() -> None:
    context = {"container": {"env": [{"name": "TOKEN", "value": "s3cr3t"}, {"name": "B"}]}}
    cleaned = scrub(context)
    assert cleaned["container"]["env"][0] == {"name": "TOKEN", "value": "[redacted]"}
    assert cleaned["container"]["env"][1] == {"name": "B"}
    assert context["container"]["env"][0]["value"] == "s3cr3t"


@pytest.mark.parametrize(
    ("expression", "reads"),
    [
        ("obj.metadata.namespace == 'kube-system'", False),
        ("ends_with(obj.metadata.name, '-dev')", False),
        ("obj.spec.containers[?name=='container'].image", False),
        ("contains(container.image, '.dkr.ecr.')", True),
        ("obj.a && container.b", True),
        ("keys(@)", True),
        ("*.image", True),
        ("obj | @.metadata", True),
    ],
)
def test_filters_that_may_read_the_container_are_told_apart(expression: str, reads: bool) -> None:
    import jmespath

    from swapper.filters import reads_container

    assert reads_container(jmespath.compile(expression).parsed) is reads


def test_a_pod_level_filter_is_evaluated_once_per_pod_with_a_memo() -> None:
    filters = Filters(["obj.metadata.namespace == 'kube-system'", "container.name == 'x'"])
    memo: dict[int, object] = {}
    assert filters.first_match(pod("kube-system"), {"name": "a"}, memo) == 0
    assert memo == {0: True}
    # The memo answers for the next container of the same pod, whatever its pod argument.
    assert filters.first_match(pod("default"), {"name": "b"}, memo) == 0
    assert filters.first_match(pod("default"), {"name": "x"}, None) == 1
