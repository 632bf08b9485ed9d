"""The words of the answer: warnings, audit annotations and the deny message."""

from __future__ import annotations

import pytest

from swapper.admission.answer import describe, refusal
from swapper.admission.review import Mode
from swapper.mutation import Decision, Outcome
from swapper.pods import Container

TARGET = "mirror.local:5000/m/docker.io/library/nginx:latest"


def container(index: int, image: str) -> Container:
    return Container("containers", index, f"c{index}", image, {})


def swapped(index: int, image: str, target: str) -> Decision:
    return Decision(container(index, image), Outcome.SWAPPED, target=target)


def filtered(index: int, image: str) -> Decision:
    return Decision(container(index, image), Outcome.SKIPPED_FILTER, filter_index=0)


def private_mirror(index: int, image: str) -> Decision:
    detail = "ghcr.io/acme/app:1 is not readable with the pod's pull secrets"
    return Decision(container(index, image), Outcome.ORIGIN_PRIVATE, target=image, detail=detail)


@pytest.mark.parametrize("mode", list(Mode))
def test_describe_reports_would_swap_only_in_audit_mode(mode: Mode) -> None:
    warnings, annotations = describe([swapped(0, "nginx", TARGET), filtered(1, "redis")], mode)
    if mode is Mode.AUDIT:
        assert warnings == [
            f"containers[c0]: would swap nginx -> {TARGET}",
            "containers[c1]: skipped by filter 0",
        ]
        assert annotations["would-swap"] == f"c0={TARGET}"
    else:
        assert warnings == []
        assert "would-swap" not in annotations and "swapped" in annotations
    assert annotations["skipped"] == "c1=skipped-filter"
    assert all("/" not in key for key in annotations)


@pytest.mark.parametrize("mode", [Mode.ENFORCE, Mode.SERVER_DRY_RUN])
def test_outside_audit_mode_a_private_mirror_is_warned_about(mode: Mode) -> None:
    mirror = "mirror.local:5000/m/ghcr.io/acme/app:1"
    warnings, annotations = describe([private_mirror(0, mirror)], mode)
    assert warnings == [
        f"containers[c0]: names the mirror image {mirror} directly, and ghcr.io/acme/app:1 is "
        "not readable with the pod's pull secrets"
    ]
    assert annotations == {"skipped": "c0=origin-private"}


def test_the_deny_message_names_the_first_container_naming_a_private_mirror_directly() -> None:
    mirror = "mirror.local:5000/m/ghcr.io/acme/app:1"
    decisions = [swapped(0, "nginx", TARGET), private_mirror(1, mirror), private_mirror(2, mirror)]
    assert refusal(decisions) == (
        f"swapper: containers[c1] names the mirror image {mirror} directly, and "
        "ghcr.io/acme/app:1 is not readable with the pod's pull secrets: a pod that may not "
        "read the source may not read its mirror (source.access.mirrorReferences: deny)"
    )


def test_a_pod_naming_no_private_mirror_has_no_deny_message() -> None:
    assert refusal([swapped(0, "nginx", TARGET), filtered(1, "redis")]) is None
