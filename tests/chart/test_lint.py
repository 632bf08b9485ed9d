"""``helm lint --strict`` on the chart with each values file."""

from __future__ import annotations

import pytest
from chart.rendering import KUBERNETES_VERSIONS, VALUES_FILES, lint, values_file

WARNING = 2


@pytest.mark.parametrize("kube_version", [KUBERNETES_VERSIONS[0], KUBERNETES_VERSIONS[-1]])
@pytest.mark.parametrize("name", VALUES_FILES)
def test_the_chart_lints_without_warnings_with_each_values_file(
    name: str, kube_version: str
) -> None:
    report = lint(values_file(name), kube_version)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= WARNING] == []


def test_lint_reports_a_value_the_chart_does_not_know() -> None:
    report = lint({"replicas": 3})
    assert any("additional properties 'replicas' not allowed" in e for e in report["errors"])
