"""The image the chart runs, checked by reading the Dockerfile.

tests/image builds the image with buildah and checks the result; these checks need nothing.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass

from chart.rendering import CHART_YAML, REPO, render

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def instructions() -> list[Instruction]:
    """Instructions in order, continuation lines joined, comments dropped, stage numbered."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    out, stage = [], -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword.upper(), args.strip()))
    return out


def arg_defaults() -> dict[str, str]:
    found = {}
    for i in instructions():
        if i.keyword == "ARG" and "=" in i.args:
            key, value = i.args.split("=", 1)
            found[key] = value
    return found


def final(keyword: str) -> list[str]:
    items = instructions()
    last = max(i.stage for i in items)
    return [i.args for i in items if i.stage == last and i.keyword == keyword]


def test_the_image_is_built_in_stages_from_slim_python_3_11() -> None:
    froms = [i.args for i in instructions() if i.keyword == "FROM"]
    assert len(froms) >= 2
    bases = {
        re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults()[m.group(1)], f.split()[0]) for f in froms
    }
    assert all(
        re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", b) for b in bases
    ), bases


def test_the_runtime_stage_takes_only_the_virtualenv_from_the_build_stage() -> None:
    copies = final("COPY")
    assert copies == ["--from=build /opt/swapper /opt/swapper"]


def test_the_image_runs_as_a_numeric_non_root_user_the_chart_expects() -> None:
    users = final("USER")
    assert len(users) == 1
    uid, gid = (int(part) for part in users[0].split(":"))
    assert uid > 0 and gid > 0
    pod = render().pod["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (uid, gid)


def test_the_image_contains_no_skopeo() -> None:
    assert not [i for i in instructions() if "skopeo" in i.args.lower()]


def test_the_runtime_stage_installs_no_system_packages() -> None:
    runs = " ".join(final("RUN"))
    assert not re.search(r"apt-get|apk |dnf |yum ", runs)


def test_the_entrypoint_is_swapper_so_the_chart_passes_subcommands() -> None:
    assert [json.loads(e) for e in final("ENTRYPOINT")] == [["swapper"]]
    rendered = render()
    assert rendered.container["args"][0] == "serve"
    job = rendered.one("Job")["spec"]["template"]["spec"]["containers"][0]
    assert job["args"][:2] == ["certs", "bootstrap"]


def test_python_writes_no_byte_code_at_run_time_on_the_read_only_root() -> None:
    env = " ".join(final("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert any("--compile" in i.args for i in instructions() if i.keyword == "RUN")


def test_the_exposed_port_is_the_one_the_chart_uses() -> None:
    assert final("EXPOSE") == [str(render().container["ports"][0]["containerPort"])]


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last match wins)."""
    result = False
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*"):
            result = not negate
    return result


def test_the_build_context_holds_what_the_build_copies_and_no_local_state() -> None:
    sources = [
        part
        for i in instructions()
        if i.keyword == "COPY" and "--from" not in i.args
        for part in i.args.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source.rstrip("/")), source
    for local in (".venv", ".git", "certs/dev/tls.key", "tests/kube_fake.py", "charts"):
        assert ignored(local), local


def pyproject_version() -> str:
    found = re.search(
        r'^version\s*=\s*"([^"]+)"',
        (REPO / "pyproject.toml").read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    assert found
    return found.group(1)


def test_the_version_label_defaults_to_the_pyproject_version() -> None:
    assert arg_defaults()["VERSION"] == pyproject_version()
    labels = " ".join(final("LABEL"))
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


def test_the_runtime_image_carries_the_oci_labels_title_source_version_and_licence() -> None:
    labels = " ".join(final("LABEL"))
    for key in ("title", "source", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_the_chart_version_and_app_version_are_the_pyproject_version() -> None:
    chart = CHART_YAML
    assert chart["version"] == chart["appVersion"] == pyproject_version()


def test_the_build_stage_removes_pip_and_setuptools_from_the_virtualenv() -> None:
    build = " ".join(i.args for i in instructions() if i.stage == 0 and i.keyword == "RUN")
    assert "pip uninstall --yes setuptools pip" in build
