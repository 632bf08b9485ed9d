"""The chart README says only what the tests check."""

from __future__ import annotations

import ast
import re

from chart.rendering import CHART, KUBERNETES_VERSIONS, REPO, VALUES_DIR, VALUES_FILES

README = (CHART / "README.md").read_text(encoding="utf-8")
# The chart's offline tests, and the end-to-end tests that install it into a real API server.
TESTS = (REPO / "tests" / "chart", REPO / "tests" / "e2e")


def chart_test_names() -> set[str]:
    names = set()
    for path in (p for folder in TESTS for p in folder.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    return names


def guarantees() -> list[tuple[str, list[str]]]:
    section = README.split("## Safety guarantees", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[1].startswith("`test_"):
            rows.append((cells[0], re.findall(r"`(test_\w+)`", cells[1])))
    return rows


def test_every_guarantee_in_the_readme_names_tests_that_exist() -> None:
    rows = guarantees()
    assert len(rows) >= 25
    known = chart_test_names()
    missing = [name for _, names in rows for name in names if name not in known]
    assert missing == []


def yaml_examples() -> dict[str, str]:
    """README yaml blocks whose first line names a values file -> their text."""
    found = {}
    for block in re.findall(r"```yaml\n(.*?)```", README, re.S):
        first, _, rest = block.partition("\n")
        match = re.fullmatch(r"# tests/chart/values/([\w-]+)\.yaml", first.strip())
        if match:
            found[match.group(1)] = rest
    return found


def test_every_values_example_in_the_readme_is_a_tested_values_file_verbatim() -> None:
    examples = yaml_examples()
    assert set(examples) >= {
        "dry-run",
        "generic",
        "ecr-irsa",
        "ecr-cross-account",
        "gar-workload-identity",
        "cert-manager",
    }
    for name, text in examples.items():
        assert name in VALUES_FILES
        assert text == (VALUES_DIR / f"{name}.yaml").read_text(encoding="utf-8"), name


def test_the_readme_names_exactly_the_validated_kubernetes_versions() -> None:
    assert f"versions {', '.join(KUBERNETES_VERSIONS)} (strict" in README.replace("\n  ", " ")
    assert f"Kubernetes {KUBERNETES_VERSIONS[0]} or newer" in README


def test_the_readme_claims_helm_4_which_the_tests_use() -> None:
    import helm_python

    assert helm_python.helm_sdk_version().startswith("v4.")
    assert "tested with Helm 4" in README


def test_the_readme_no_longer_says_ecr_and_artifact_registry_need_another_build() -> None:
    assert "backend is in place" not in README
    assert "the chart side is ready" not in README


def test_the_readme_says_account_ids_need_set_string() -> None:
    assert "--set-string config.target.aws.accountId=123456789012" in README


def test_the_readme_says_there_is_no_default_target() -> None:
    assert "There is no default target: a render without one fails" in README


MIGRATING = (REPO / "docs" / "migrating.md").read_text(encoding="utf-8")


def test_the_migration_guide_names_every_reference_chart_value_the_chart_refuses() -> None:
    from chart.test_reference_values import REPLACEMENTS

    missing = [key for key in [*REPLACEMENTS, "service.type"] if f"`{key}" not in MIGRATING]
    assert missing == []


def test_the_migration_guide_covers_account_ids_deadlines_the_tag_and_the_webhook_path() -> None:
    for heading in (
        "### Account IDs",
        "### Deadlines",
        "### The tag kept next to the digest",
        "## The webhook path",
        "## The Helm chart",
    ):
        assert heading in MIGRATING


def test_the_readme_and_the_main_readme_link_the_migration_guide() -> None:
    assert "(../../docs/migrating.md)" in README
    assert "(docs/migrating.md)" in (REPO / "README.md").read_text(encoding="utf-8")
