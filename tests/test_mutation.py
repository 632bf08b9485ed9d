from __future__ import annotations

import asyncio
import dataclasses

import pytest
from helpers import make_pod, make_review

from swapper.access.verdicts import Access
from swapper.admission.answer import describe
from swapper.admission.review import Mode, containers_of, secret_frozen
from swapper.config import CopyPolicy, RefreshTags, SwapPolicy
from swapper.filters import Filters
from swapper.mirror.memory import MemoryAccess, MemoryCopyQueue
from swapper.mutation import CopyState, Mutator, Outcome, Policy, requester_of
from swapper.targets.memory import MemoryTarget

ENDPOINT = "mirror.local:5000/m"


def mutator(
    swap: SwapPolicy = SwapPolicy.ALWAYS,
    copy: CopyPolicy = CopyPolicy.NONE,
    filters: tuple[str, ...] = (),
    pull_secret: str | None = None,
    deadline: float = 1.0,
) -> tuple[Mutator, MemoryTarget, MemoryCopyQueue]:
    target = MemoryTarget(ENDPOINT)
    queue = MemoryCopyQueue(target)
    policy = Policy(ENDPOINT, swap, copy, deadline, pull_secret, Filters(filters))
    return Mutator(policy, target, queue), target, queue


async def decide(m: Mutator, review_pod: dict, side_effects: bool = True, **kw: object) -> list:
    review = make_review(review_pod, **kw)  # type: ignore[arg-type]
    settled, candidates = m.plan(
        review.object,
        review.namespace,
        containers=containers_of(review),
        secret_frozen=secret_frozen(review, m.policy.pull_secret),
    )
    resolved = await m.resolve(
        candidates, requester_of(review.object, review.namespace), side_effects
    )
    return sorted(settled + resolved, key=lambda d: (d.container.field, d.container.index))


async def test_a_plain_image_is_swapped_to_the_normalised_mirror_name() -> None:
    m, _, _ = mutator()
    [d] = await decide(m, make_pod("nginx:1.27"))
    assert d.outcome is Outcome.SWAPPED
    assert d.target == "mirror.local:5000/m/docker.io/library/nginx:1.27"


async def test_an_image_already_in_the_target_is_not_swapped_again() -> None:
    m, _, _ = mutator()
    [d] = await decide(m, make_pod("mirror.local:5000/m/docker.io/library/nginx:1.27"))
    assert d.outcome is Outcome.SKIPPED_ORIGIN


async def test_an_invalid_reference_is_reported_and_left_alone() -> None:
    m, _, _ = mutator()
    [bad, good] = await decide(m, make_pod("Not/Valid:Ref!", "redis"))
    assert bad.outcome is Outcome.INVALID_REFERENCE and bad.target is None
    assert good.outcome is Outcome.SWAPPED


async def test_a_filter_skips_by_namespace_filled_in_from_the_request() -> None:
    m, _, _ = mutator(filters=("obj.metadata.namespace == 'kube-system'",))
    [d] = await decide(m, make_pod("nginx"), namespace="kube-system")
    assert (d.outcome, d.filter_index) == (Outcome.SKIPPED_FILTER, 0)


async def test_init_containers_are_swapped_too() -> None:
    m, _, _ = mutator()
    decisions = await decide(m, make_pod("nginx", init=("busybox",)))
    assert {d.container.field for d in decisions if d.swapped} == {"containers", "initContainers"}


async def test_exists_policy_swaps_only_what_the_mirror_has() -> None:
    m, target, _ = mutator(swap=SwapPolicy.EXISTS)
    target.add_image("mirror.local:5000/m/docker.io/library/nginx:latest")
    present, absent = await decide(m, make_pod("nginx", "redis"))
    assert present.outcome is Outcome.SWAPPED
    assert absent.outcome is Outcome.NOT_FOUND


async def test_delayed_copy_queues_and_exists_policy_does_not_swap_yet() -> None:
    m, _target, queue = mutator(swap=SwapPolicy.EXISTS, copy=CopyPolicy.DELAYED)
    [d] = await decide(m, make_pod("nginx"))
    assert (d.outcome, d.copy) == (Outcome.NOT_FOUND, CopyState.QUEUED)
    await asyncio.sleep(0)
    assert [j.target for j in queue.jobs] == [d.target]


async def test_immediate_copy_waits_and_then_swaps() -> None:
    m, target, _queue = mutator(swap=SwapPolicy.EXISTS, copy=CopyPolicy.IMMEDIATE)
    [d] = await decide(m, make_pod("nginx"))
    assert (d.outcome, d.copy) == (Outcome.SWAPPED, CopyState.COPIED)
    assert d.target in target.images
    assert target.repositories == {"m/docker.io/library/nginx"}


async def test_an_immediate_copy_past_its_deadline_does_not_swap_under_exists() -> None:
    m, _, queue = mutator(swap=SwapPolicy.EXISTS, copy=CopyPolicy.IMMEDIATE, deadline=0.05)
    queue.delay = 1.0
    [d] = await decide(m, make_pod("nginx"))
    assert (d.outcome, d.copy) == (Outcome.NOT_FOUND, CopyState.DEADLINE)
    await queue.aclose()


async def test_force_copy_failure_is_reported_and_always_policy_still_swaps() -> None:
    m, _, queue = mutator(swap=SwapPolicy.ALWAYS, copy=CopyPolicy.FORCE)
    queue.fail.add("mirror.local:5000/m/docker.io/library/nginx:latest")
    [d] = await decide(m, make_pod("nginx"))
    assert (d.outcome, d.copy) == (Outcome.SWAPPED, CopyState.FAILED)


async def test_the_same_image_twice_in_a_pod_is_copied_once() -> None:
    m, _, queue = mutator(copy=CopyPolicy.IMMEDIATE)
    decisions = await decide(m, make_pod("nginx", "nginx", init=("nginx",)))
    assert all(d.swapped for d in decisions)
    assert len(queue.jobs) == 1


async def test_without_side_effects_nothing_is_copied_or_created() -> None:
    m, target, queue = mutator(swap=SwapPolicy.EXISTS, copy=CopyPolicy.FORCE)
    [d] = await decide(m, make_pod("nginx"), side_effects=False)
    assert (d.outcome, d.copy) == (Outcome.SWAPPED, CopyState.WOULD_COPY)
    assert queue.jobs == [] and target.repositories == set() and target.images == set()


async def test_a_failing_target_decides_error_for_that_container_only() -> None:
    m, target, _ = mutator(swap=SwapPolicy.EXISTS)
    target.fail_with = ConnectionError("registry down")
    [origin, broken] = await decide(m, make_pod("mirror.local:5000/m/x:1", "nginx"))
    assert origin.outcome is Outcome.SKIPPED_ORIGIN
    assert broken.outcome is Outcome.ERROR
    assert "registry down" in broken.detail


async def test_on_ephemeral_update_only_new_ephemeral_containers_are_considered() -> None:
    m, _, _ = mutator()
    old = make_pod("nginx")
    old["spec"]["ephemeralContainers"] = [{"name": "debug1", "image": "busybox"}]
    new = make_pod("nginx")
    new["spec"]["ephemeralContainers"] = [
        {"name": "debug1", "image": "busybox"},
        {"name": "debug2", "image": "alpine"},
    ]
    decisions = await decide(
        m, new, operation="UPDATE", sub_resource="ephemeralcontainers", old=old
    )
    assert [(d.container.name, d.container.index) for d in decisions] == [("debug2", 1)]


async def test_an_ephemeral_container_is_not_swapped_when_the_pull_secret_cannot_be_added() -> None:
    m, _, _ = mutator(pull_secret="mirror")
    new = make_pod("nginx")
    new["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox"}]
    [d] = await decide(
        m, new, operation="UPDATE", sub_resource="ephemeralcontainers", old=make_pod("nginx")
    )
    assert d.outcome is Outcome.NO_PULL_SECRET


async def test_a_plain_pod_update_is_not_mutated() -> None:
    m, _, _ = mutator()
    assert await decide(m, make_pod("nginx"), operation="UPDATE") == []


async def test_a_mirror_name_over_255_characters_is_reported_not_emitted() -> None:
    m, _, _ = mutator()
    long_path = "/".join(["abcdefghij" * 2] * 11)  # 230 characters, valid on its own
    [d] = await decide(m, make_pod(f"ghcr.io/{long_path}:1"))
    assert d.outcome is Outcome.INVALID_REFERENCE
    assert "over 255 characters" in d.detail


async def test_a_copy_job_carries_the_pods_namespace_secrets_and_service_account() -> None:
    m, _, queue = mutator(copy=CopyPolicy.DELAYED)
    pod = make_pod("ghcr.io/acme/app:1.4", secrets=("ghcr", "quay"))
    pod["spec"]["serviceAccountName"] = "builder"
    await decide(m, pod, namespace="team")
    await asyncio.sleep(0)
    [job] = queue.jobs
    assert (job.namespace, job.pull_secrets, job.service_account) == (
        "team",
        ("ghcr", "quay"),
        "builder",
    )


@pytest.mark.parametrize(
    ("image", "pull_policy", "refresh", "recheck"),
    [
        ("ghcr.io/acme/app:1.4", "Always", RefreshTags.ON_PULL, 60.0),
        ("ghcr.io/acme/app:1.4", "IfNotPresent", RefreshTags.ON_PULL, 3600.0),
        ("ghcr.io/acme/app:1.4", "IfNotPresent", RefreshTags.ALWAYS, 3600.0),
        ("ghcr.io/acme/app:1.4", "Always", RefreshTags.NEVER, 0.0),
        ("ghcr.io/acme/app:1.4@sha256:" + "a" * 64, "Always", RefreshTags.ON_PULL, 0.0),
    ],
)
async def test_a_tag_asks_the_copy_to_look_at_the_source_again_as_refresh_tags_says(
    image: str, pull_policy: str, refresh: RefreshTags, recheck: float
) -> None:
    m, _, queue = mutator(copy=CopyPolicy.DELAYED)
    m.policy = dataclasses.replace(m.policy, refresh_tags=refresh)
    pod = make_pod(image)
    pod["spec"]["containers"][0]["imagePullPolicy"] = pull_policy
    await decide(m, pod)
    await asyncio.sleep(0)
    [job] = queue.jobs
    assert job.recheck == recheck


def guarded(
    private: dict[str, set[str]],
    copy: CopyPolicy = CopyPolicy.DELAYED,
    unreachable: set[str] | None = None,
    mirror_references: str = "deny",
    access_deadline: float = 1.5,
) -> tuple[Mutator, MemoryAccess, MemoryCopyQueue]:
    m, target, queue = mutator(copy=copy)
    access = MemoryAccess(private, unreachable or set())
    policy = dataclasses.replace(
        m.policy, mirror_references=mirror_references, access_deadline=access_deadline
    )
    return Mutator(policy, target, queue, access), access, queue


async def test_a_private_image_is_not_swapped_for_a_pod_whose_secrets_cannot_read_it() -> None:
    m, _, queue = guarded({"ghcr.io/acme/secret": {"acme-pull"}})
    [d] = await decide(m, make_pod("ghcr.io/acme/secret:1", secrets=("other",)))
    await asyncio.sleep(0)
    assert d.outcome is Outcome.NO_SOURCE_ACCESS
    assert queue.jobs == []


async def test_a_private_image_is_swapped_for_a_pod_whose_secrets_can_read_it() -> None:
    m, _, _ = guarded({"ghcr.io/acme/secret": {"acme-pull"}})
    [d] = await decide(m, make_pod("ghcr.io/acme/secret:1", secrets=("acme-pull",)))
    assert d.outcome is Outcome.SWAPPED


async def test_a_public_image_known_to_be_public_needs_no_access_check() -> None:
    m, access, _ = guarded({"ghcr.io/acme/secret": {"acme-pull"}})
    [d] = await decide(m, make_pod("nginx:1.27"))
    assert d.outcome is Outcome.SWAPPED
    assert access.asked == 0


async def test_a_failing_access_check_leaves_the_image_alone() -> None:
    class Broken(MemoryAccess):
        async def check(self, source: object, who: object, deadline: float) -> Access:
            raise RuntimeError("registry unreachable")

    m, target, queue = mutator(copy=CopyPolicy.DELAYED)
    m = Mutator(m.policy, target, queue, Broken({"ghcr.io/acme/secret": set()}))
    [d] = await decide(m, make_pod("ghcr.io/acme/secret:1"))
    assert d.outcome is Outcome.ERROR


async def test_a_denied_private_image_is_warned_about_outside_dry_run() -> None:
    m, _, _ = guarded({"ghcr.io/acme/secret": {"acme-pull"}})
    decisions = await decide(m, make_pod("ghcr.io/acme/secret:1"))
    warnings, annotations = describe(decisions, Mode.ENFORCE)
    assert warnings == [
        "containers[c0]: not swapped: ghcr.io/acme/secret:1 is not readable without "
        "credentials (private, or not there)"
    ]
    assert annotations == {"skipped": "c0=skipped-private"}


async def test_an_unanswered_source_is_skipped_unverified_and_the_others_go_on() -> None:
    m, _, queue = guarded({}, unreachable={"docker.io/library/redis"}, access_deadline=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    hanging, public = await decide(m, make_pod("redis:7", "nginx:1.27"))
    assert loop.time() - started < 1.0
    assert hanging.outcome is Outcome.UNVERIFIED
    assert public.outcome is Outcome.SWAPPED
    warnings, _ = describe([hanging], Mode.ENFORCE)
    assert warnings == [
        "containers[c0]: not swapped: could not verify that docker.io/library/redis:7 is "
        "readable (source unreachable: no answer in time)"
    ]
    await asyncio.sleep(0)
    assert [job.source.name for job in queue.jobs] == ["docker.io/library/nginx"]


async def test_the_access_deadline_is_shared_by_all_of_a_pods_containers() -> None:
    m, _, _ = guarded(
        {}, unreachable={"docker.io/library/a", "docker.io/library/b"}, access_deadline=0.3
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    decisions = await decide(m, make_pod("a", "b"))
    assert {d.outcome for d in decisions} == {Outcome.UNVERIFIED}
    assert loop.time() - started < 0.55  # at once, not 0.3 s each


MIRRORED_SECRET = f"{ENDPOINT}/ghcr.io/acme/secret:1"


async def test_a_mirror_reference_whose_source_the_pod_can_read_is_left_alone() -> None:
    m, _, _ = guarded({"ghcr.io/acme/secret": {"acme-pull"}})
    [d] = await decide(m, make_pod(MIRRORED_SECRET, secrets=("acme-pull",)))
    assert d.outcome is Outcome.SKIPPED_ORIGIN


async def test_a_mirror_reference_is_checked_against_the_source_its_path_names() -> None:
    m, access, _ = guarded({"ghcr.io/acme/secret": {"acme-pull"}})
    [d] = await decide(m, make_pod(MIRRORED_SECRET, secrets=("swapper-pull",)))
    assert d.outcome is Outcome.ORIGIN_PRIVATE
    assert d.detail == (
        "ghcr.io/acme/secret:1 is not readable without credentials (private, or not there)"
    )
    assert access.asked == 1


async def test_a_mirror_reference_of_an_unreachable_source_is_origin_unverified() -> None:
    m, _, _ = guarded({}, unreachable={"ghcr.io/acme/secret"}, access_deadline=0.1)
    [d] = await decide(m, make_pod(MIRRORED_SECRET))
    assert d.outcome is Outcome.ORIGIN_UNVERIFIED


async def test_mirror_references_allow_skips_the_check() -> None:
    m, access, _ = guarded({"ghcr.io/acme/secret": {"acme-pull"}}, mirror_references="allow")
    [d] = await decide(m, make_pod(MIRRORED_SECRET))
    assert d.outcome is Outcome.SKIPPED_ORIGIN
    assert access.asked == 0


async def test_an_image_in_the_target_outside_the_mirror_paths_is_not_checked() -> None:
    m, access, _ = guarded({"ghcr.io/acme/secret": {"acme-pull"}})
    [d] = await decide(m, make_pod(f"{ENDPOINT}/team-app:1"))
    assert d.outcome is Outcome.SKIPPED_ORIGIN
    assert access.asked == 0
