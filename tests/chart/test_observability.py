"""The optional PrometheusRule and Grafana dashboard: valid for Prometheus, only real metrics.

The rules are checked with the real ``promtool`` (Debian package ``prometheus``, installed by
``make apt``): ``promtool check rules`` parses every expression and annotation template, and
``promtool test rules`` replays series through some alerts to show they fire when they should.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart.rendering import (
    CHART,
    KUBERNETES_VERSIONS,
    NAMESPACE,
    lint,
    merged,
    render,
    values_file,
)

from swapper.metrics import Metrics

WARNING = 2  # helm lint severity (as in test_lint.py)
BOTH = {"metrics": {"prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}}
RUNBOOK = "https://example.org/swapper/docs/operations.md"
OPERATIONS = CHART.parents[1] / "docs" / "operations.md"
ALERTS = {
    "SwapperWebhookNotReady",
    "SwapperCopiesFailing",
    "SwapperHealFailed",
    "SwapperTaskRestarting",
    "SwapperNoLeader",
    "SwapperBackfillQueueFull",
    "SwapperAdmissionErrors",
    "SwapperImagesMissingInMirror",
    "SwapperSourcesGone",
}
CONTROLLER_ALERTS = {"SwapperNoLeader", "SwapperImagesMissingInMirror", "SwapperSourcesGone"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: run `make apt` (Debian package `prometheus`), "
            "these tests check the PrometheusRule with the real promtool"
        )
    return path


def rule_spec(values: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = render({**BOTH, **(values or {})}).one("PrometheusRule")["spec"]
    return spec  # type: ignore[no-any-return]


def rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"]]


def dashboard_text() -> str:
    return render(BOTH).one("ConfigMap", "swapper-dashboard")["data"]["swapper.json"]  # type: ignore[no-any-return]


def exposed_sample_names() -> set[str]:
    """Every sample name swapper's /metrics can expose (labelled or not, touched or not)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
    }
    names = set()
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


def metric_tokens(text: str) -> set[str]:
    return set(re.findall(r"\bswapper_[a-z_]+\b", text))


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_nothing_is_rendered_by_default() -> None:
    rendered = render()
    assert not rendered.has("PrometheusRule")
    assert not [
        o for o in rendered.all("ConfigMap") if "grafana_dashboard" in o["metadata"]["labels"]
    ]


# monitoring.coreos.com/v1 PrometheusRule, from the Prometheus Operator API reference: every
# field the chart fills in, unknown fields refused (chart.crd_schemas covers the other CRDs).
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {
    "type": "string",
    "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
    "(([0-9]+)s)?(([0-9]+)ms)?)$",
}
PROMETHEUS_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": _STRINGS,
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr"],
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": _DURATION,
                                        "keep_firing_for": _DURATION,
                                        "labels": _STRINGS,
                                        "annotations": _STRINGS,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


@pytest.mark.parametrize("version", [KUBERNETES_VERSIONS[0], KUBERNETES_VERSIONS[-1]])
def test_the_rule_and_the_dashboard_are_valid_objects(version: str) -> None:
    rendered = render({**BOTH, "metrics": {**BOTH["metrics"], "serviceMonitor": {"enabled": True}}})
    jsonschema.Draft7Validator(PROMETHEUS_RULE).validate(rendered.one("PrometheusRule"))
    kubernetes_validate.validate(
        rendered.one("ConfigMap", "swapper-dashboard"), version, strict=True
    )


def test_helm_lint_passes_with_both_enabled() -> None:
    report = lint(merged(values_file("defaults"), BOTH))
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= WARNING] == []


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_spec()), encoding="utf-8")
    result = run([promtool(), "check", "rules", "rules.yaml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook() -> None:
    found = rules(
        rule_spec(
            {
                "metrics": {
                    **BOTH["metrics"],
                    "prometheusRule": {"enabled": True, "runbookBaseUrl": RUNBOOK},
                }
            }
        )
    )
    assert {r["alert"] for r in found} == ALERTS
    headings = OPERATIONS.read_text(encoding="utf-8")
    for rule in found:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], rule["alert"]
        assert notes["runbook_url"] == f"{RUNBOOK}#{rule['alert'].lower()}"
        assert f"\n## {rule['alert']}\n" in headings, f"docs/operations.md lacks {rule['alert']}"


def test_no_runbook_url_without_a_base_url() -> None:
    assert all("runbook_url" not in r["annotations"] for r in rules(rule_spec()))


def test_the_alerts_select_the_release_namespace_only() -> None:
    for rule in rules(rule_spec()):
        for selector in re.findall(r"swapper_[a-z_]+(\{[^}]*\})?", rule["expr"]):
            assert f'namespace="{NAMESPACE}"' in selector, rule["alert"]


def test_no_controller_alert_without_the_controller() -> None:
    found = rules(rule_spec({"config": {"controller": {"enabled": False}}}))
    assert {r["alert"] for r in found} == ALERTS - CONTROLLER_ALERTS


def test_the_rules_and_the_dashboard_use_only_metrics_swapper_exposes() -> None:
    exposed = exposed_sample_names()
    used_by_rules = metric_tokens(yaml.safe_dump(rule_spec()))
    used_by_dashboard = metric_tokens(dashboard_text())
    assert used_by_rules and used_by_dashboard
    assert sorted(used_by_rules - exposed) == []
    assert sorted(used_by_dashboard - exposed) == []


def test_the_dashboard_is_valid_json_with_a_title_and_panels() -> None:
    dashboard = json.loads(dashboard_text())
    assert dashboard["title"]
    panels = dashboard["panels"]
    assert len(panels) >= 6
    assert all(p["title"] and p["targets"] for p in panels)
    assert (CHART / "dashboards" / "swapper.json").read_text(encoding="utf-8").strip() == (
        dashboard_text().strip()
    )


def test_the_dashboard_config_map_carries_the_grafana_sidecar_label() -> None:
    labels = render(BOTH).one("ConfigMap", "swapper-dashboard")["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "1"
    custom = {"metrics": {"dashboard": {"enabled": True, "label": "dash", "labelValue": "yes"}}}
    labels = render(custom).one("ConfigMap", "swapper-dashboard")["metadata"]["labels"]
    assert labels["dash"] == "yes"
    assert "grafana_dashboard" not in labels


def test_promtool_unit_tests_show_the_alerts_fire(tmp_path: Path) -> None:
    """Series replayed through the rendered rules with ``promtool test rules``."""
    spec = rule_spec()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    annotations = {r["alert"]: r["annotations"] for r in rules(spec)}

    def fired(alert: str, labels: dict[str, str], description: str | None = None) -> Any:
        """One expected alert; promtool compares the annotations too, templates expanded."""
        notes = dict(annotations[alert])
        if description is not None:
            notes["description"] = description
        assert "{{" not in notes["description"], alert
        return {"exp_labels": {"severity": "warning", **labels}, "exp_annotations": notes}

    ns = f'namespace="{NAMESPACE}"'
    cases = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'swapper_ready{{{ns},pod="a"}}', "values": "0x10"},
                    {"series": f'swapper_ready{{{ns},pod="b"}}', "values": "1x10"},
                    {"series": f'swapper_leader{{{ns},pod="a"}}', "values": "0x10"},
                    {"series": f'swapper_leader{{{ns},pod="b"}}', "values": "0x10"},
                    {
                        "series": f'swapper_heals_total{{{ns},pod="b",action="restore",'
                        'result="failed"}',
                        "values": "0 0 1 1 1 1 1 1 1 1 1",
                    },
                    {
                        "series": f'swapper_task_restarts_total{{{ns},pod="b",task="backfill"}}',
                        "values": "0+1x10",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "SwapperWebhookNotReady",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "namespace": NAMESPACE,
                                    "pod": "a",
                                },
                                "exp_annotations": {
                                    "summary": "A swapper webhook pod is not ready, or no pod "
                                    "reports.",
                                    "description": f"Pod a in namespace {NAMESPACE} has not been "
                                    "ready for 5 minutes.",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "10m",
                        "alertname": "SwapperNoLeader",
                        "exp_alerts": [fired("SwapperNoLeader", {})],
                    },
                    {
                        "eval_time": "10m",
                        "alertname": "SwapperHealFailed",
                        "exp_alerts": [fired("SwapperHealFailed", {})],
                    },
                    {
                        "eval_time": "10m",
                        "alertname": "SwapperTaskRestarting",
                        "exp_alerts": [
                            fired(
                                "SwapperTaskRestarting",
                                {"pod": "b", "task": "backfill"},
                                "Task backfill of pod b restarted more than 3 times in 15 minutes.",
                            )
                        ],
                    },
                    # Quiet while nothing fails.
                    {"eval_time": "10m", "alertname": "SwapperCopiesFailing", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "SwapperAdmissionErrors", "exp_alerts": []},
                ],
            },
            {
                # The monitor's states: missing in the mirror for 30 minutes fires, a source gone
                # for less than an hour does not yet.
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'swapper_images{{{ns},pod="b",state="missing-in-mirror"}}',
                        "values": "2x40",
                    },
                    {
                        "series": f'swapper_images{{{ns},pod="b",state="source-gone"}}',
                        "values": "1x40",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "40m",
                        "alertname": "SwapperImagesMissingInMirror",
                        "exp_alerts": [
                            fired(
                                "SwapperImagesMissingInMirror",
                                {},
                                "2 image(s) in use have been missing in the mirror for 30 "
                                "minutes; a pod that pulls one now fails.",
                            )
                        ],
                    },
                    {"eval_time": "40m", "alertname": "SwapperSourcesGone", "exp_alerts": []},
                ],
            },
            {
                # No series of the release at all: absent() makes the webhook alert fire.
                "interval": "1m",
                "input_series": [
                    {"series": 'swapper_ready{namespace="other",pod="x"}', "values": "1x10"}
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "SwapperWebhookNotReady",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "namespace": NAMESPACE},
                                "exp_annotations": {
                                    "summary": "A swapper webhook pod is not ready, or no pod "
                                    "reports.",
                                    "description": f"No swapper pod in namespace {NAMESPACE} has "
                                    "reported readiness for 5 minutes.",
                                },
                            }
                        ],
                    }
                ],
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(cases), encoding="utf-8")
    result = run([promtool(), "test", "rules", "tests.yaml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
