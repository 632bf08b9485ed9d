"""NOTES.txt: what the user reads after `helm install`."""

from __future__ import annotations

from chart.rendering import render


def test_the_notes_name_the_target_registry() -> None:
    assert "Target: generic registry.internal.example.org/mirror." in render(file="dry-run").notes
    notes = render(file="ecr-irsa").notes
    assert "Target: aws account 123456789012 eu-west-1." in notes


def test_the_notes_explain_the_dry_run_report_and_how_to_enforce() -> None:
    notes = render(file="dry-run").notes
    assert "DRY RUN" in notes
    assert "images.swapper.io/would-swap" in notes
    assert "--set config.dryRun=false" in notes


def test_the_notes_say_when_pods_are_rewritten() -> None:
    assert "ENFORCING" in render(file="generic").notes


def test_the_notes_list_the_namespaces_never_sent() -> None:
    assert "never sent: namespaces swapper-system, kube-system" in render().notes


def test_the_notes_say_whether_a_dry_run_install_fills_the_mirror_before_enforcing() -> None:
    prefill = render(file="dry-run").notes
    assert "elected on the Lease swapper-system/swapper-controller" in prefill
    assert "mirrors their images now (prefill), changing no pod" in prefill
    assert "--set config.controller.prefill=true" in render().notes
    assert "Cluster half: off" in render({"config": {"controller": {"enabled": False}}}).notes
