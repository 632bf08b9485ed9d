from __future__ import annotations

import json

from helpers import make_pod

from swapper.admission.patches import build_patch
from swapper.mutation import Decision, Outcome
from swapper.pods import ORIGINAL_IMAGES, Container, original_images


def swapped(field: str, index: int, image: str, target: str) -> Decision:
    return Decision(Container(field, index, f"c{index}", image, {}), Outcome.SWAPPED, target=target)


def skipped(field: str, index: int, image: str) -> Decision:
    return Decision(Container(field, index, f"c{index}", image, {}), Outcome.SKIPPED_FILTER)


def test_only_swapped_images_are_replaced() -> None:
    pod = make_pod("nginx", "redis")
    ops = build_patch(
        pod, [swapped("containers", 0, "nginx", "t/nginx"), skipped("containers", 1, "redis")], None
    )
    assert ops == [{"op": "replace", "path": "/spec/containers/0/image", "value": "t/nginx"}]


def test_nothing_swapped_gives_an_empty_patch_even_with_a_pull_secret() -> None:
    assert build_patch(make_pod("nginx"), [skipped("containers", 0, "nginx")], "mirror") == []


def test_the_pull_secret_list_is_created_when_the_pod_has_none() -> None:
    ops = build_patch(make_pod("nginx"), [swapped("containers", 0, "nginx", "t/n")], "mirror")
    assert ops[-1] == {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "mirror"}]}


def test_the_pull_secret_is_appended_keeping_the_pods_own() -> None:
    pod = make_pod("nginx", secrets=("own",))
    ops = build_patch(pod, [swapped("containers", 0, "nginx", "t/n")], "mirror")
    assert ops[-1] == {"op": "add", "path": "/spec/imagePullSecrets/-", "value": {"name": "mirror"}}


def test_the_pull_secret_is_never_duplicated() -> None:
    pod = make_pod("nginx", secrets=("own", "mirror"))
    ops = build_patch(pod, [swapped("containers", 0, "nginx", "t/n")], "mirror")
    assert [op["path"] for op in ops] == ["/spec/containers/0/image"]


def test_the_pull_secret_is_not_added_when_the_spec_is_frozen() -> None:
    ops = build_patch(
        make_pod("nginx"),
        [swapped("containers", 0, "nginx", "t/n")],
        "mirror",
        may_add_secret=False,
    )
    assert len(ops) == 1


def test_init_and_ephemeral_container_paths_are_addressed_by_field() -> None:
    ops = build_patch(
        make_pod("a"),
        [swapped("initContainers", 2, "a", "t/a"), swapped("ephemeralContainers", 0, "b", "t/b")],
        None,
    )
    assert [op["path"] for op in ops] == [
        "/spec/initContainers/2/image",
        "/spec/ephemeralContainers/0/image",
    ]


def test_a_created_pod_records_the_images_it_was_created_with_in_an_annotation() -> None:
    pod = make_pod("nginx", "redis")
    ops = build_patch(
        pod,
        [swapped("containers", 0, "nginx", "t/nginx"), skipped("containers", 1, "redis")],
        None,
        record_originals=True,
    )
    assert ops[-1] == {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {ORIGINAL_IMAGES: json.dumps({"c0": "nginx"})},
    }


def test_the_originals_annotation_merges_with_what_the_pod_carries() -> None:
    pod = make_pod("nginx")
    pod["metadata"]["annotations"] = {ORIGINAL_IMAGES: json.dumps({"old": "busybox:1"}), "a": "b"}
    ops = build_patch(pod, [swapped("containers", 0, "nginx", "t/n")], None, record_originals=True)
    assert ops[-1]["path"] == "/metadata/annotations/swapper.io~1original-images"
    pod["metadata"]["annotations"][ORIGINAL_IMAGES] = ops[-1]["value"]
    assert original_images(pod) == {"old": "busybox:1", "c0": "nginx"}


def test_nothing_is_recorded_when_nothing_is_swapped_or_on_an_update() -> None:
    pod = make_pod("nginx")
    assert build_patch(pod, [skipped("containers", 0, "nginx")], None, record_originals=True) == []
    ops = build_patch(pod, [swapped("containers", 0, "nginx", "t/n")], None)
    assert [op["path"] for op in ops] == ["/spec/containers/0/image"]


def test_an_unreadable_originals_annotation_counts_as_absent() -> None:
    pod = make_pod("nginx")
    for raw in ("not json", "[1]", json.dumps({"c0": 5})):
        pod["metadata"]["annotations"] = {ORIGINAL_IMAGES: raw}
        assert original_images(pod) == {}
