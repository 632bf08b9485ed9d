"""Values that contradict each other fail the render, with a message that says what to change."""

from __future__ import annotations

import pytest
from chart.rendering import render, render_error


def test_a_copy_deadline_not_below_the_webhook_timeout_fails_the_render() -> None:
    message = render_error(
        {
            "config": {"imageCopyDeadline": "10s", "admissionTimeout": "12s"},
            "webhook": {"timeoutSeconds": 10},
        }
    )
    assert "config.imageCopyDeadline (10s) must be below webhook.timeoutSeconds (10s)" in message


def test_an_admission_timeout_not_below_the_webhook_timeout_fails_the_render() -> None:
    message = render_error({"config": {"admissionTimeout": "9s"}, "webhook": {"timeoutSeconds": 9}})
    assert "config.admissionTimeout (9s) must be below webhook.timeoutSeconds (9s)" in message


def test_a_copy_deadline_not_below_the_admission_timeout_fails_the_render() -> None:
    message = render_error({"config": {"imageCopyDeadline": "8s", "admissionTimeout": "8s"}})
    assert "config.imageCopyDeadline (8s) must be below config.admissionTimeout (8s)" in message


def test_lowering_the_timeout_without_lowering_swappers_budgets_fails_the_render() -> None:
    message = render_error({"webhook": {"timeoutSeconds": 5}})
    assert "must be below webhook.timeoutSeconds (5s)" in message


def test_a_longer_webhook_timeout_admits_a_longer_copy_deadline() -> None:
    rendered = render(
        {
            "config": {"imageCopyDeadline": "20s", "admissionTimeout": "25s"},
            "webhook": {"timeoutSeconds": 30},
        }
    )
    assert rendered.webhook["timeoutSeconds"] == 30


@pytest.mark.parametrize(
    ("deadline", "fits"),
    [("8500ms", True), ("0.1m", True), ("9s", False), ("1m", False), (8.9, True), (9, False)],
)
def test_deadlines_are_compared_as_go_durations_or_seconds(deadline: object, fits: bool) -> None:
    values = {"config": {"imageCopyDeadline": deadline}}
    if fits:
        render(values)
    else:
        assert "config.imageCopyDeadline" in render_error(values)


def test_both_pod_disruption_limits_fail_the_render() -> None:
    message = render_error({"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}})
    assert "set minAvailable or maxUnavailable, not both" in message


def test_a_cert_manager_issuer_in_job_mode_fails_the_render() -> None:
    message = render_error({"certificates": {"certManager": {"issuerRef": {"name": "ca"}}}})
    assert "the two certificate modes exclude each other" in message


def test_a_target_type_without_its_block_fails_the_render() -> None:
    message = render_error({"config": {"target": {"type": "gcp"}}})
    assert "/config/target/gcp': missing properties 'location', 'projectId', 'repositoryId'" in (
        message
    )
